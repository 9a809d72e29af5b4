// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(gpu.module(dsv3-gpu-warp-mma))" | FileCheck %s
// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(gpu.module(dsv3-gpu-warp-mma{shared-memory=false}))" | FileCheck %s --check-prefix=DIRECT

// The warp MMA tile of the grouped expert GEMMs: a K loop of bf16 x bf16 ->
// f32 contractions on two accumulators, a SiLU * up epilogue and a write of
// the rows that exist. Each operand tile is copied into shared memory (a
// workgroup buffer; each lane one vector load of consecutive elements of a
// row, between barriers; the A tile once for both contractions), each lane
// loads its A/B fragments from there (bf16 pairs packed in i32), the loop
// carries four f32 per accumulator, the epilogue runs on those, and each lane
// stores its four values behind a row guard.

// CHECK-LABEL: gpu.func @gate_up_tile
// CHECK-SAME: workgroup(%[[SA:.*]] : memref<16x16xbf16, 3> {llvm.align = 16 : i64}, %[[SG:.*]] : memref<8x16xbf16, 3> {llvm.align = 16 : i64}, %[[SU:.*]] : memref<8x16xbf16, 3> {llvm.align = 16 : i64})
// CHECK-NOT: vector.contract
// CHECK: scf.for {{.*}} iter_args(%[[G0:[^ ]*]] = %{{[^,]*}}, %[[G1:[^ ]*]] = %{{[^,]*}}, %[[G2:[^ ]*]] = %{{[^,]*}}, %[[G3:[^ ]*]] = %{{[^,]*}}, %[[U0:[^ ]*]] = %{{[^,]*}}, {{.*}}) -> (f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK: gpu.barrier
// CHECK: gpu.lane_id
// CHECK: %[[ROW:.*]] = vector.load %{{.*}} : memref<?x64xbf16>, vector<8xbf16>
// CHECK: vector.store %[[ROW]], %[[SA]]
// CHECK: gpu.barrier
// CHECK: vector.load %{{.*}} : memref<4x32x64xbf16>, vector<4xbf16>
// CHECK: vector.store %{{.*}}, %[[SG]]
// CHECK: vector.store %{{.*}}, %[[SU]]
// CHECK: gpu.barrier
// CHECK: %[[FA:.*]] = nvgpu.ldmatrix %[[SA]][{{.*}}] {numTiles = 4 : i32, transpose = false} : memref<16x16xbf16, 3> -> vector<4x2xbf16>
// CHECK: vector.extract %[[FA]][0] : vector<2xbf16> from vector<4x2xbf16>
// CHECK: vector.bitcast %{{.*}} : vector<2xbf16> to vector<1xi32>
// CHECK: nvgpu.ldmatrix %[[SG]][{{.*}}] {numTiles = 2 : i32, transpose = false} : memref<8x16xbf16, 3> -> vector<2x2xbf16>
// CHECK: nvvm.mma.sync A[{{.*}}, {{.*}}, {{.*}}, {{.*}}] B[{{.*}}, {{.*}}] C[%[[G0]], %[[G1]], %[[G2]], %[[G3]]]
// CHECK-SAME: layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>
// CHECK-SAME: multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>
// CHECK-SAME: shape = #nvvm.shape<m = 16, n = 8, k = 16>
// The up tile's MMA reuses the A fragments: one ldmatrix of A per step.
// CHECK-NOT: nvgpu.ldmatrix %[[SA]]
// CHECK: nvgpu.ldmatrix %[[SU]]
// CHECK: nvvm.mma.sync {{.*}} C[%[[U0]],
// CHECK: scf.yield {{.*}} : f32, f32, f32, f32, f32, f32, f32, f32
// CHECK: math.exp %{{.*}} : f32
// CHECK: memref.dim
// CHECK: arith.cmpi ult
// CHECK: scf.if
// CHECK: memref.store %{{.*}} : memref<?x8xf32, strided<[?, 1], offset: ?>>
// CHECK-NOT: vector<16x8xf32>

// Without shared memory each lane loads its fragment pairs from the tile's
// memory.
// DIRECT-LABEL: gpu.func @gate_up_tile
// DIRECT-NOT: workgroup
// DIRECT-NOT: gpu.barrier
// DIRECT: memref.load %{{.*}} : memref<?x64xbf16>
// DIRECT: vector.bitcast %{{.*}} : vector<2xbf16> to vector<1xi32>
// DIRECT: nvvm.mma.sync
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
#wk = affine_map<(g, n, k) -> (n, k)>
gpu.module @kernels {
  gpu.func @gate_up_tile(%a: memref<?x64xbf16>, %gate: memref<4x32x64xbf16>, %up: memref<4x32x64xbf16>,
                         %block: memref<?x8xf32, strided<[?, 1], offset: ?>>, %lo: index, %g: index, %n0: index) kernel {
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %c64 = arith.constant 64 : index
    %pad = arith.constant 0.0 : bf16
    %zero = arith.constant dense<0.0> : vector<16x8xf32>
    %one = arith.constant dense<1.0> : vector<16x8xf32>
    %acc:2 = scf.for %k = %c0 to %c64 step %c16 iter_args(%ag = %zero, %au = %zero) -> (vector<16x8xf32>, vector<16x8xf32>) {
      %ra = vector.transfer_read %a[%lo, %k], %pad {in_bounds = [true, true]} : memref<?x64xbf16>, vector<16x16xbf16>
      %va = arith.extf %ra : vector<16x16xbf16> to vector<16x16xf32>
      %rg = vector.transfer_read %gate[%g, %n0, %k], %pad {in_bounds = [true, true], permutation_map = #wk} : memref<4x32x64xbf16>, vector<8x16xbf16>
      %vg = arith.extf %rg : vector<8x16xbf16> to vector<8x16xf32>
      %ru = vector.transfer_read %up[%g, %n0, %k], %pad {in_bounds = [true, true], permutation_map = #wk} : memref<4x32x64xbf16>, vector<8x16xbf16>
      %vu = arith.extf %ru : vector<8x16xbf16> to vector<8x16xf32>
      %ng = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vg, %ag : vector<16x16xf32>, vector<8x16xf32> into vector<16x8xf32>
      %nu = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vu, %au : vector<16x16xf32>, vector<8x16xf32> into vector<16x8xf32>
      scf.yield %ng, %nu : vector<16x8xf32>, vector<16x8xf32>
    }
    %neg = arith.negf %acc#0 : vector<16x8xf32>
    %e = math.exp %neg : vector<16x8xf32>
    %den = arith.addf %one, %e : vector<16x8xf32>
    %silu = arith.divf %acc#0, %den : vector<16x8xf32>
    %act = arith.mulf %silu, %acc#1 : vector<16x8xf32>
    vector.transfer_write %act, %block[%c0, %c0] {in_bounds = [false, true]} : vector<16x8xf32>, memref<?x8xf32, strided<[?, 1], offset: ?>>
    gpu.return
  }
}

// -----

// A contraction that is not an m16n8k16 bf16 tile (here f32 reads) would be
// computed by every lane: an error, not silent redundant work.
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
gpu.module @kernels {
  gpu.func @f32_tile(%a: memref<16x16xf32>, %b: memref<8x16xf32>, %c: memref<16x8xf32>) kernel {
    %c0 = arith.constant 0 : index
    %pad = arith.constant 0.0 : f32
    %zero = arith.constant dense<0.0> : vector<16x8xf32>
    %va = vector.transfer_read %a[%c0, %c0], %pad {in_bounds = [true, true]} : memref<16x16xf32>, vector<16x16xf32>
    %vb = vector.transfer_read %b[%c0, %c0], %pad {in_bounds = [true, true]} : memref<8x16xf32>, vector<8x16xf32>
    // expected-error @+1 {{dsv3-gpu-warp-mma: cannot give each lane its part of this warp tile}}
    %r = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vb, %zero : vector<16x16xf32>, vector<8x16xf32> into vector<16x8xf32>
    vector.transfer_write %r, %c[%c0, %c0] {in_bounds = [true, true]} : vector<16x8xf32>, memref<16x8xf32>
    gpu.return
  }
}

// -----

// A warp tile that arrives as a kernel argument has no per-lane form.
gpu.module @kernels {
  // expected-error @+1 {{cannot give each lane its part of this warp tile}}
  gpu.func @argument_tile(%t: vector<16x8xf32>, %c: memref<16x8xf32>) kernel {
    %c0 = arith.constant 0 : index
    vector.transfer_write %t, %c[%c0, %c0] {in_bounds = [true, true]} : vector<16x8xf32>, memref<16x8xf32>
    gpu.return
  }
}

// -----

// The attention form: f32 operands rounded to bf16 in the tile (truncf),
// reads that are not in bounds (a partial tile of heads or positions) and B
// read transposed from a [t, c] cache (o_lat = P . latent). Each element is
// loaded at a clamped index, rounded, and replaced by the padding past the
// end, then stored into the tile's shared copy; the write of the partial
// tile is guarded on both dimensions.

// CHECK-LABEL: gpu.func @attention_tile
// CHECK-SAME: workgroup(%[[SP:.*]] : memref<16x16xbf16, 3> {llvm.align = 16 : i64}, %{{.*}} : memref<8x16xbf16, 3> {llvm.align = 16 : i64})
// CHECK: scf.for
// CHECK: memref.dim %{{.*}}, %c1
// CHECK: arith.minui
// CHECK: %[[V:.*]] = memref.load %{{.*}} : memref<1x?x64xf32>
// CHECK: %[[R:.*]] = arith.truncf %[[V]] : f32 to bf16
// CHECK: %[[E:.*]] = arith.select %{{.*}}, %[[R]], %{{.*}} : bf16
// CHECK: memref.store %[[E]], %[[SP]]
// CHECK: nvvm.mma.sync
// CHECK: scf.if
// CHECK: memref.store
// CHECK-NOT: vector.contract
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
#rows = affine_map<(b, m, k) -> (m, k)>
#transposed = affine_map<(b, t, c) -> (c, t)>
gpu.module @kernels {
  gpu.func @attention_tile(%p: memref<1x?x64xf32>, %cache: memref<1x?x32xf32>, %out: memref<?x?xf32>,
                           %m0: index, %n0: index, %used: index) kernel {
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %pad = arith.constant 0.0 : f32
    %zero = arith.constant dense<0.0> : vector<16x8xf32>
    %acc = scf.for %k = %c0 to %used step %c16 iter_args(%a = %zero) -> (vector<16x8xf32>) {
      %ra = vector.transfer_read %p[%c0, %m0, %k], %pad {permutation_map = #rows} : memref<1x?x64xf32>, vector<16x16xf32>
      %ta = arith.truncf %ra : vector<16x16xf32> to vector<16x16xbf16>
      %va = arith.extf %ta : vector<16x16xbf16> to vector<16x16xf32>
      %rb = vector.transfer_read %cache[%c0, %k, %n0], %pad {permutation_map = #transposed} : memref<1x?x32xf32>, vector<8x16xf32>
      %tb = arith.truncf %rb : vector<8x16xf32> to vector<8x16xbf16>
      %vb = arith.extf %tb : vector<8x16xbf16> to vector<8x16xf32>
      %n = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vb, %a : vector<16x16xf32>, vector<8x16xf32> into vector<16x8xf32>
      scf.yield %n : vector<16x8xf32>
    }
    vector.transfer_write %acc, %out[%c0, %c0] : vector<16x8xf32>, memref<?x?xf32>
    gpu.return
  }
}
