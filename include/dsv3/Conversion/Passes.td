//===- Passes.td - dsv3 conversion passes ------------------*- tablegen -*-===//

#ifndef DSV3_CONVERSION_PASSES
#define DSV3_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def ConvertDSV3ToLinalg : Pass<"convert-dsv3-to-linalg", "ModuleOp"> {
  let summary = "Lower dsv3 ops to linalg, tensor, arith, math and scf on tensors";
  let description = [{
    Rewrites every dsv3 op into upstream ops on tensors, computing in f32:

    - `dsv3.linear`: the grouped row-dots weight stream (an `scf.forall` over
      tiles of 8 output rows, 16-lane FMA loops) that widens each weight
      element in registers (bf16/f16 `arith.extf`; FP8 e4m3 decoded exactly
      with integer ops, times its 128x128 block scale), so no f32 copy of a
      weight is made;
    - `dsv3.rms_norm`, `dsv3.embedding`, `dsv3.rope` (frequencies, with YaRN,
      folded to a constant table at compile time): `linalg.generic`s;
    - `dsv3.mla`: the projections as weight streams, a scatter of this call's
      entries into the cache at their positions, and causal softmax attention
      over the cache prefix in use: on the latent cache with W_UK absorbed
      into the query and W_UV applied after attention (or, for a call of at
      least `expand_from` tokens, naive attention on K/V expanded from the
      latent), or on the expanded per-head K/V cache;
    - `dsv3.moe` (unfused): routing (scores, selection bias, group-limited
      top-k by rank, normalisation, scaling) as `linalg.generic`s, then each
      (token, slot) pair through its expert's gate, up and down and the
      weighted sum, plus the shared experts as a SwiGLU MLP;
    - the fused MoE ops of `dsv3-fuse-moe`: the same routing, a serial
      counting sort for the dispatch, and two grouped-expert kernels
      (parallel over active expert x column tile) for gate/up and down,
      followed by the combine through the inverse permutation.

    With `tensor-cores` (set by the GPU pipelines), GEMMs become warp MMA
    tiles: `mma-rows` x 8 output tiles (64 x 8 * the tiles a warpgroup
    computes side by side, up to 32, with 64 rows) of `vector.contract`
    steps with bf16 operands and f32 accumulation, which
    `dsv3-gpu-warp-mma` turns into `mma.sync` (16 rows, a warp) or `wgmma`
    (64 rows, a warpgroup; sm_90a)
    (see lib/Conversion/DSV3ToLinalg/WarpMma.h): the two grouped-expert
    kernels where the weights are bf16 and the widths fit (each expert's
    rows gathered as bf16 first), the absorbed attention as one fused
    kernel with the query heads as the M dimension (q . cache tiles, an
    online softmax over chunks of 32 positions, P . latent tiles with P
    still in registers; its W_UK / W_UV absorptions are tiles too where
    kv_b is bf16), and every
    linear with bf16 weights but the router (the tokens as M; the router
    stays f32 so that rounding cannot change which experts are chosen).

    Example:
    ```mlir
    %y = dsv3.linear %x, %w : (tensor<7x128xf32>, tensor<64x128xbf16>) -> tensor<7x64xf32>
    // becomes
    %y = linalg.generic {... iterator_types = ["parallel", "parallel", "reduction"]}
         ins(%x, %w : tensor<7x128xf32>, tensor<64x128xbf16>) outs(%zero : tensor<7x64xf32>) {
       ^bb0(%a: f32, %b: bf16, %acc: f32):
         %bf = arith.extf %b : bf16 to f32
         ... }
    ```
  }];
  let dependentDialects = [
    "mlir::linalg::LinalgDialect", "mlir::tensor::TensorDialect",
    "mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::scf::SCFDialect", "mlir::vector::VectorDialect",
    "mlir::bufferization::BufferizationDialect", "mlir::memref::MemRefDialect"
  ];
  let options = [
    Option<"tensorCores", "tensor-cores", "bool", /*default=*/"false",
           "Lower the grouped expert GEMMs to warp MMA tiles (bf16 operands, "
           "f32 accumulation) where the weights allow">,
    Option<"mmaRows", "mma-rows", "int64_t", /*default=*/"16",
           "Rows of a tensor-core tile: 16 (one warp's mma.sync m16n8k16) or "
           "64 (one warpgroup's wgmma m64nNk16, sm_90a)">,
    Option<"tokenRowBlock", "token-row-block", "int64_t", /*default=*/"1",
           "Token rows the row-dot kernels (linears, the LM head) compute per "
           "pass over a weight tile: 1, 2 or 4; 4 on the CPU, where it makes a "
           "batched decode step read and widen each weight chunk once for "
           "four tokens">
  ];
}

def DSV3EmitPackedEntryPoints : Pass<"dsv3-emit-packed-entry-points", "ModuleOp"> {
  let summary = "Add `void dsv3_<entry>(void **args)` wrappers for the runtime";
  let description = [{
    Runs on the LLVM dialect, after `convert-to-llvm`. For every function with
    a `_mlir_ciface_` wrapper and a `dsv3.entry` attribute, adds an exported
    function `dsv3_<entry>(ptr args)` that the runtime can call whatever the
    number of weights: `args[i]` points to the memref descriptor of input i,
    in signature order, followed by one descriptor per result that the
    wrapper fills in place (destination passing): the result's bytes are
    copied into the caller's buffer, unless the result already is that buffer
    (an in-place KV-cache update), and the compiled code's own allocation is
    freed. It also adds `void dsv3_set_num_threads(int32_t)`, which sets the
    number of OpenMP threads the parallel loops use.

    With `device=cuda` the buffers are device memory: results are copied
    with `mgpuMemcpy` and freed with `mgpuMemFree` (the runtime's mgpu* ABI),
    and there is no thread control.
  }];
  let options = [
    Option<"device", "device", "std::string", /*default=*/"\"cpu\"",
           "Where the buffers live: cpu | cuda">
  ];
  let dependentDialects = ["mlir::LLVM::LLVMDialect"];
}

def DSV3InternalizeEntryPoints : Pass<"dsv3-internalize-entry-points", "ModuleOp"> {
  let summary = "Make the dsv3 entry functions private before bufferization";
  let description = [{
    The runtime calls the packed `dsv3_<entry>` wrappers, never the entry
    functions themselves, so they can be private. That lets
    `drop-equivalent-buffer-results` remove results that are updated in place
    (the KV cache): the cache is then written in its own buffer and never
    cloned or copied back. The functions keep their `dsv3.entry` attribute,
    from which the packed wrappers are built.
  }];
}

def DSV3MemRefCopyToLinalg : Pass<"dsv3-memref-copy-to-linalg", "func::FuncOp"> {
  let summary = "Turn strided memref.copy into linalg.copy (lowered to loops)";
  let description = [{
    `memref.copy` between buffers whose layout is not statically contiguous
    (e.g. the tile a parallel loop writes into its slice of the output) lowers
    to a call to `memrefCopy` from MLIR's C runner utilities, a library the
    artifacts must not depend on. As `linalg.copy` it becomes plain loops.
    Copies between identity-layout buffers stay (they become memcpy), unless
    `all` is set: the GPU pipeline needs every copy as loops, since memcpy
    on the host cannot touch device memory.
  }];
  let options = [
    Option<"all", "all", "bool", /*default=*/"false",
           "Turn every memref.copy into linalg.copy, contiguous ones too">
  ];
  let dependentDialects = ["mlir::linalg::LinalgDialect"];
}

def DSV3OpenMPSchedule : Pass<"dsv3-openmp-schedule", "ModuleOp"> {
  let summary = "Set the schedule of every omp.wsloop";
  let description = [{
    `convert-scf-to-openmp` leaves the schedule of the parallel loops unset
    (static). This pass sets `schedule_kind` on every `omp.wsloop`: `static`,
    `dynamic`, `guided`, `auto` or `runtime` (the `OMP_SCHEDULE` environment
    variable chooses at run time).
  }];
  let options = [
    Option<"schedule", "schedule", "std::string", /*default=*/"\"static\"",
           "static | dynamic | guided | auto | runtime">
  ];
  let dependentDialects = ["mlir::omp::OpenMPDialect"];
}

def DSV3WrapSerialCodeForGpu : Pass<"dsv3-wrap-serial-code-for-gpu", "func::FuncOp"> {
  let summary = "Put host-level code that touches buffers into one-iteration scf.parallel loops";
  let description = [{
    On the GPU every buffer lives in device memory, so the host may not load
    or store through it. After `convert-linalg-to-parallel-loops`, the
    parallel work is in `scf.parallel` loops (which become kernels); what is
    left at host level are serial pieces: a reduction over all positions, a
    counting sort, a scalar store. This pass wraps each such op (an op
    without results that reads or writes memory, outside any scf.parallel)
    into `scf.parallel (%i) = (0) to (1)`, which
    `convert-parallel-loops-to-gpu` turns into a single-thread kernel. Host
    control flow that contains parallel loops (the layer loop) is descended
    into, not wrapped. A `memref.load` whose value the host needs (a loop
    bound) stays: `dsv3-gpu-device-buffers` stages it through host memory.
    A serial op with scalar results (a count of active experts) hands them
    to the host through one-element buffers, loaded (and staged) after the
    kernel; an op with buffer results is an error.
  }];
  let dependentDialects = ["mlir::scf::SCFDialect", "mlir::arith::ArithDialect"];
}

def DSV3GpuTileParallelLoops : Pass<"dsv3-gpu-tile-parallel-loops", "func::FuncOp"> {
  let summary = "Give every outermost scf.parallel a thread-block tile";
  let description = [{
    Shapes the parallel loops the way `gpu-map-parallel-loops` maps them:
    an outer loop over blocks and one inner loop over the threads of a
    block. For each outermost `scf.parallel`, parallel loops nested in it
    become sequential loops (each thread runs them), and its innermost
    dimension is split into `ceil(n / threads)` tiles of `threads`
    iterations (the inner loop, mapped to threads), guarded by `if (i < n)`.
    The tiles and all other dimensions become one linear block index (the
    outer loop, mapped to the grid's x, which no loop outgrows; the indices
    are recovered by division, the tile index fastest). A dimension of
    static extent below `threads` is not split: its extent is the block
    size.

    A loop whose body holds a `vector.contract` is warp-level code (the
    warp MMA tiles of the grouped expert GEMMs, each iteration one warp's
    work, run collectively by its lanes): all its dimensions become the
    block index and the inner loop is `warp-lanes` iterations that do not
    use their index (32 lanes, mapped to threads, for the GPU's 16-row
    mma.sync tiles, 128 -- a warpgroup -- for the 64-row wgmma tiles;
    `dsv3-gpu-warp-mma` then gives each lane its part). The CPU form of the
    tiles uses `warp-lanes=1`: the warp's work once, as vector math.

    This is the tiled form the GPU kernels are generated from; the
    `dsv3-gpu-tiled-on-cpu` pipeline lowers it for the CPU instead, so the
    kernels' tiling is tested against the reference without a GPU.
  }];
  let options = [
    Option<"threads", "threads", "int64_t", /*default=*/"128",
           "Threads per block (the inner loop's extent)">,
    Option<"warpLanes", "warp-lanes", "int64_t", /*default=*/"32",
           "Threads of a block running a warp-level loop (32 for mma.sync "
           "tiles, 128 for wgmma tiles, 1 for the CPU form)">
  ];
  let dependentDialects = ["mlir::scf::SCFDialect", "mlir::arith::ArithDialect"];
}

def DSV3GpuWarpMma : Pass<"dsv3-gpu-warp-mma"> {
  let summary = "bf16 vector.contract tiles -> mma.sync (warp) or wgmma (warpgroup) on tensor cores";
  let description = [{
    Runs on GPU code (a `gpu.module`, after outlining) whose warp-level loops
    come from `dsv3-gpu-tile-parallel-loops` (each warp of 32 lanes runs the
    body collectively). Rewrites the warp MMA tiles of the grouped expert
    GEMMs:

        %a = arith.extf (vector.transfer_read %A[...] : vector<16x16xbf16>)
        %b = arith.extf (vector.transfer_read %B[...] : vector<8x16xbf16>)
        %c = vector.contract (m,k) x (n,k) -> (m,n) %a, %b, %acc
             : vector<16x16xf32>, vector<8x16xf32> into vector<16x8xf32>

    into `nvvm.mma.sync` m16n8k16 (row x col, bf16 operands, f32
    accumulators): each lane loads its own fragments (per the PTX fragment
    layout: lane = 4 * group + t holds rows group and group + 8, columns
    2t, 2t + 1 (+ 8)) straight from memory, and the 16x8 accumulator becomes
    four f32 values per lane. Loops carrying accumulators get four scalar
    iteration arguments per accumulator instead; elementwise epilogues (SiLU,
    products) run per lane on its four values; `vector.transfer_write` of a
    tile becomes each lane's four stores (guarded where the write is not in
    bounds). A contraction of any other form is an error: it would otherwise
    be computed by every lane of the warp.

    With `shared-memory` (the default), each operand tile is first copied
    into shared memory (a workgroup buffer of the kernel; a block is one
    warp) where it is read: every lane copies consecutive elements of one
    row (one vector load where the rows are contiguous bf16), between two
    barriers, and the lanes then load their fragments from there with one
    `nvgpu.ldmatrix` per tile (.x4 for A, .x2 for B). Off: each lane loads
    its fragments from the tile's memory as 32-bit pairs.

    Upstream `convert-vector-to-gpu` does the same for f16 only (MLIR 22),
    and `nvgpu.mma.sync` does not lower bf16 to NVVM there, so the NVVM op
    is built directly.

    64-row tiles (`convert-dsv3-to-linalg{mma-rows=64}`, the GPU pipeline's
    choice on sm_90a), 64 x N with N a multiple of 8 (the compiler emits up
    to 32: a warpgroup's four 8-column tiles in one), are one warpgroup's
    work (a block of 128 threads: warp w holds rows 16w..16w+15 of the
    accumulator, each thread per 8 columns the same four values as with
    mma.sync) and become `nvvm.wgmma.mma_async` m64nNk16 (bf16 x bf16 ->
    f32, A and B K-major from shared memory): each
    operand tile is copied by the warpgroup into a workgroup buffer
    [rows/8][2][8][8] (the no-swizzle core-matrix layout: 8 rows x 16 bytes
    per core matrix; one 16-byte row per thread), fenced for the async
    proxy (`nvvm.fence.proxy async.shared::cta`) and a barrier, and read by
    the tensor cores through a 64-bit matrix descriptor (start address,
    leading byte offset 128, stride byte offset 256, no swizzle) built once
    at the kernel's entry; each wgmma is fenced, committed and waited for.
    A 64-row tile needs shared memory: outside a `gpu.func` or with
    `shared-memory=false` it is an error.

    The fused MLA attention (an online softmax between two products) adds
    values that live in the same layout without being accumulators, each
    given its per-thread form: R x 1 per-row values (two per thread: rows g
    and g + 8; the running max and sum) from `shape_cast(multi_reduction
    over the columns)` -- the thread combines its own values of a row, then
    the row's four threads exchange theirs with two `gpu.shuffle xor` -- or
    from `shape_cast(transfer_read)` of R elements (per-row limits, loaded
    by each thread); `vector.broadcast` of a scalar, of an R x 1 value along
    the columns, and of `vector.step` (each value's column number);
    column slices (`extract_strided_slice`, `insert_strided_slice` at
    multiples of 8); elementwise ops on any element type (masks, index
    arithmetic). A contraction whose A operand is such a value
    (`extf(truncf(P))`, R x 16) takes it from registers: on mma.sync the
    accumulator layout of 16 x 16 is the A fragment, so the thread packs its
    pairs; wgmma reads A from shared memory, so each thread stores its eight
    values into a core-matrix buffer first (barrier, stores, proxy fence,
    barrier). A per-row value written to memory is stored by the first of
    the four threads of each row.
  }];
  let options = [
    Option<"sharedMemory", "shared-memory", "bool", /*default=*/"true",
           "Stage each operand tile through shared memory">
  ];
  let dependentDialects = [
    "mlir::NVVM::NVVMDialect", "mlir::LLVM::LLVMDialect",
    "mlir::nvgpu::NVGPUDialect",
    "mlir::gpu::GPUDialect", "mlir::memref::MemRefDialect",
    "mlir::scf::SCFDialect", "mlir::arith::ArithDialect",
    "mlir::vector::VectorDialect"
  ];
}

def DSV3GpuNameKernels : Pass<"dsv3-gpu-name-kernels", "ModuleOp"> {
  let summary = "Name each gpu.launch after the dsv3 op it came from";
  let description = [{
    `convert-dsv3-to-linalg` tags what it builds with the name of the dsv3
    op (a NameLoc such as `dsv3.mla`). Before `gpu-kernel-outlining`, this
    pass sets each `gpu.launch`'s kernel module and function names from that
    tag (`mla_0`, `moe_gate_up_1`, ...), so the PTX, a profiler and the
    runtime's per-kernel timings say which model op a kernel computes.
    Launches without a tag (glue) are named `glue_<n>`.
  }];
}

def DSV3GpuDeviceBuffers : Pass<"dsv3-gpu-device-buffers", "ModuleOp"> {
  let summary = "Place the host code's buffers in device memory";
  let description = [{
    Runs after `convert-parallel-loops-to-gpu`, before kernel outlining. In
    host code (outside `gpu.launch`): `memref.alloc`/`memref.dealloc` become
    `gpu.alloc`/`gpu.dealloc`; a `memref.load` the host needs is staged: a
    one-thread kernel copies the element into a device scalar, `gpu.memcpy`
    brings it to a host scalar, and the host loads that; a
    `memref.get_global` used by kernels is re-created inside each kernel,
    so outlining copies the constant into the GPU module instead of passing
    a host pointer; so are the vector values canonicalization hoisted out of
    the kernels (constants, `vector.step`, broadcasts and shape casts of
    those), which `dsv3-gpu-warp-mma` must see as what they are rather than
    as kernel arguments. Host memory accesses that remain are an error.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::memref::MemRefDialect"];
}

#endif // DSV3_CONVERSION_PASSES
