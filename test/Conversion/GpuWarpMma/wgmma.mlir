// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(gpu.module(dsv3-gpu-warp-mma))" | FileCheck %s
// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(gpu.module(dsv3-gpu-warp-mma))" | dsv3-opt --split-input-file --pass-pipeline="builtin.module(gpu.module(convert-vector-to-llvm,convert-gpu-to-nvvm,convert-nvvm-to-llvm,reconcile-unrealized-casts))" | FileCheck %s --check-prefix=PTX

// The 64-row tiles of mma-rows=64 (sm_90a), here 64 x 32 as the compiler
// emits them (a warpgroup's four 8-column tiles side by side): one
// warpgroup's wgmma.mma_async.m64n32k16 per contraction. The operand tiles
// are copied by the warpgroup's 128 threads into shared memory in the
// core-matrix layout [rows/8][2][8][8] (8 rows x 16 bytes per core matrix:
// thread t copies row t / 2, columns 8 (t % 2) .. + 7 with one vector load;
// for the 32-row B tile only threads t < 64), fenced for the async proxy,
// and read through matrix descriptors built once at the kernel's entry:
// (address & 0x3FFFF) >> 4 | LBO 128 B >> 4 << 16 | SBO 256 B >> 4 << 32 =
// 68720001024. Each wgmma is fenced, committed and waited for; the loop
// carries 16 f32 per accumulator (four per 8 columns, as with mma.sync), and
// thread t writes rows 16 * (t / 32) + (t % 32) / 4 (+ 8), columns
// 8j + 2 (t % 4) (+ 1) of each 8-column slice j.

// CHECK-LABEL: gpu.func @gate_up_tile
// CHECK-SAME: workgroup(%[[SA:.*]] : memref<8x2x8x8xbf16, 3> {llvm.align = 16 : i64}, %[[SG:.*]] : memref<4x2x8x8xbf16, 3> {llvm.align = 16 : i64}, %[[SU:.*]] : memref<4x2x8x8xbf16, 3> {llvm.align = 16 : i64})
// CHECK-DAG: %[[PU:.*]] = memref.extract_aligned_pointer_as_index %[[SU]]
// CHECK-DAG: %[[PG:.*]] = memref.extract_aligned_pointer_as_index %[[SG]]
// CHECK-DAG: %[[PA:.*]] = memref.extract_aligned_pointer_as_index %[[SA]]
// CHECK-DAG: %[[MASK:.*]] = arith.constant 262143 : i64
// CHECK-DAG: %[[STRIDES:.*]] = arith.constant 68720001024 : i64
// CHECK: %[[IA:.*]] = arith.index_castui %[[PA]] : index to i64
// CHECK: %[[MA:.*]] = arith.andi %[[IA]], %{{.*}} : i64
// CHECK: %[[SHA:.*]] = arith.shrui %[[MA]], %{{.*}} : i64
// CHECK: %[[DA:.*]] = arith.ori %[[SHA]], %{{.*}} : i64
// CHECK-NOT: vector.contract
// CHECK: scf.for {{.*}} iter_args(%[[G0:[^ ]*]] = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %{{[^ ]*}} = %{{[^,]*}}, %[[U0:[^ ]*]] = %{{[^,]*}}, {{.*}}) -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK: gpu.barrier
// CHECK: %[[T:.*]] = gpu.thread_id x
// CHECK: %[[ROW:.*]] = arith.divui %[[T]], %{{.*}} : index
// CHECK: %[[HALF:.*]] = arith.remui %[[T]], %{{.*}} : index
// CHECK: %[[VALS:.*]] = vector.load %{{.*}} : memref<?x64xbf16>, vector<8xbf16>
// CHECK: vector.store %[[VALS]], %[[SA]][%{{.*}}, %[[HALF]], %{{.*}}, %{{.*}}] : memref<8x2x8x8xbf16, 3>, vector<8xbf16>
// CHECK: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK-NEXT: gpu.barrier
// CHECK-NOT: gpu.barrier
// CHECK: %[[T64:.*]] = arith.cmpi ult, %{{.*}}, %c64{{.*}} : index
// CHECK: scf.if %[[T64]] {
// CHECK: vector.load %{{.*}} : memref<4x32x64xbf16>, vector<8xbf16>
// CHECK: vector.store %{{.*}}, %[[SG]]
// CHECK: nvvm.fence.proxy
// CHECK-NEXT: gpu.barrier
// CHECK: vector.store %{{.*}}, %[[SU]]
// CHECK: nvvm.fence.proxy
// CHECK-NEXT: gpu.barrier
// CHECK: llvm.insertvalue %[[G0]], %{{.*}}[0] : !llvm.struct<(f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)>
// CHECK: nvvm.wgmma.fence.aligned
// CHECK-NEXT: nvvm.wgmma.mma_async %[[DA]], %{{.*}}, %{{.*}}, <m = 64, n = 32, k = 16>, D[<f32>, <one>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>] : !llvm.struct<(f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)>
// CHECK-NEXT: nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT: nvvm.wgmma.wait.group.sync.aligned 0
// The up tile's wgmma reads the same A descriptor.
// CHECK: llvm.insertvalue %[[U0]], %{{.*}}[0]
// CHECK: nvvm.wgmma.mma_async %[[DA]],
// CHECK: scf.yield {{.*}} : f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32
// CHECK: math.exp %{{.*}} : f32
// CHECK: %[[LANE:.*]] = gpu.lane_id
// CHECK: %[[GROUP:.*]] = arith.divui %[[LANE]], %c4{{.*}} : index
// CHECK: %[[TW:.*]] = gpu.thread_id x
// CHECK: %[[WARP:.*]] = arith.divui %[[TW]], %c32{{.*}} : index
// CHECK: %[[WROWS:.*]] = arith.muli %[[WARP]], %c16{{.*}} : index
// CHECK: arith.addi %[[GROUP]], %[[WROWS]] : index
// CHECK: scf.if
// CHECK: memref.store %{{.*}} : memref<?x32xf32, strided<[?, 1], offset: ?>>
// The last value: row + 8, column 8 * 3 + 2 (t % 4) + 1.
// CHECK: %[[C25:.*]] = arith.constant 25 : index
// CHECK: arith.addi %{{.*}}, %[[C25]] : index
// CHECK-NOT: vector<64x32xf32>

// Lowered: the fences and the wgmma as inline PTX (K-major A and B: no
// transpose; scale-d on).
// PTX-LABEL: llvm.func @gate_up_tile
// PTX: nvvm.fence.proxy
// PTX: nvvm.wgmma.fence.aligned
// PTX: llvm.inline_asm has_side_effects {{.*}}wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {$0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15}, $32, $33, p, $35,  $36, $37,  $38;
// PTX: nvvm.wgmma.commit.group.sync.aligned
// PTX: nvvm.wgmma.wait.group.sync.aligned 0
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
#wk = affine_map<(g, n, k) -> (n, k)>
gpu.module @kernels {
  gpu.func @gate_up_tile(%a: memref<?x64xbf16>, %gate: memref<4x32x64xbf16>, %up: memref<4x32x64xbf16>,
                         %block: memref<?x32xf32, strided<[?, 1], offset: ?>>, %lo: index, %g: index, %n0: index) kernel {
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %c64 = arith.constant 64 : index
    %pad = arith.constant 0.0 : bf16
    %zero = arith.constant dense<0.0> : vector<64x32xf32>
    %one = arith.constant dense<1.0> : vector<64x32xf32>
    %acc:2 = scf.for %k = %c0 to %c64 step %c16 iter_args(%ag = %zero, %au = %zero) -> (vector<64x32xf32>, vector<64x32xf32>) {
      %ra = vector.transfer_read %a[%lo, %k], %pad {in_bounds = [true, true]} : memref<?x64xbf16>, vector<64x16xbf16>
      %va = arith.extf %ra : vector<64x16xbf16> to vector<64x16xf32>
      %rg = vector.transfer_read %gate[%g, %n0, %k], %pad {in_bounds = [true, true], permutation_map = #wk} : memref<4x32x64xbf16>, vector<32x16xbf16>
      %vg = arith.extf %rg : vector<32x16xbf16> to vector<32x16xf32>
      %ru = vector.transfer_read %up[%g, %n0, %k], %pad {in_bounds = [true, true], permutation_map = #wk} : memref<4x32x64xbf16>, vector<32x16xbf16>
      %vu = arith.extf %ru : vector<32x16xbf16> to vector<32x16xf32>
      %ng = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vg, %ag : vector<64x16xf32>, vector<32x16xf32> into vector<64x32xf32>
      %nu = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vu, %au : vector<64x16xf32>, vector<32x16xf32> into vector<64x32xf32>
      scf.yield %ng, %nu : vector<64x32xf32>, vector<64x32xf32>
    }
    %neg = arith.negf %acc#0 : vector<64x32xf32>
    %e = math.exp %neg : vector<64x32xf32>
    %den = arith.addf %one, %e : vector<64x32xf32>
    %silu = arith.divf %acc#0, %den : vector<64x32xf32>
    %act = arith.mulf %silu, %acc#1 : vector<64x32xf32>
    vector.transfer_write %act, %block[%c0, %c0] {in_bounds = [false, true]} : vector<64x32xf32>, memref<?x32xf32, strided<[?, 1], offset: ?>>
    gpu.return
  }
}

// -----

// An f32 A operand rounded in the tile and a transposed B (the P . latent
// product: B[n][k] = latent[k][n]): copied element by element into the
// core-matrix layout (rounded, masked past the ends), eight per thread.

// PTX-LABEL: llvm.func @rounded_transposed_tile
// PTX: wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {$0, $1, $2, $3}, $8, $9, p, $11,  $12, $13,  $14;

// CHECK-LABEL: gpu.func @rounded_transposed_tile
// CHECK-SAME: workgroup(%[[SA:.*]] : memref<8x2x8x8xbf16, 3> {{.*}}, %[[SB:.*]] : memref<1x2x8x8xbf16, 3>
// CHECK: scf.for
// CHECK: memref.load %{{.*}} : memref<?x?xf32>
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: arith.select
// CHECK: memref.store %{{.*}}, %[[SA]][%{{.*}}, %{{.*}}, %{{.*}}, %c0{{.*}}] : memref<8x2x8x8xbf16, 3>
// CHECK: memref.store %{{.*}}, %[[SA]][%{{.*}}, %{{.*}}, %{{.*}}, %c7{{.*}}] : memref<8x2x8x8xbf16, 3>
// CHECK-NOT: vector.load
// CHECK: scf.if
// CHECK: memref.load %{{.*}} : memref<?x?xbf16>
// CHECK: memref.store %{{.*}}, %[[SB]]
// CHECK: nvvm.wgmma.mma_async
// CHECK-NOT: vector.contract
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
#kn = affine_map<(k, n) -> (n, k)>
gpu.module @kernels {
  gpu.func @rounded_transposed_tile(%p: memref<?x?xf32>, %latent: memref<?x?xbf16>, %out: memref<?x?xf32>, %m0: index, %n0: index, %depth: index) kernel {
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %fpad = arith.constant 0.0 : f32
    %pad = arith.constant 0.0 : bf16
    %zero = arith.constant dense<0.0> : vector<64x8xf32>
    %acc = scf.for %k = %c0 to %depth step %c16 iter_args(%c = %zero) -> (vector<64x8xf32>) {
      %rp = vector.transfer_read %p[%m0, %k], %fpad : memref<?x?xf32>, vector<64x16xf32>
      %tp = arith.truncf %rp : vector<64x16xf32> to vector<64x16xbf16>
      %vp = arith.extf %tp : vector<64x16xbf16> to vector<64x16xf32>
      %rl = vector.transfer_read %latent[%k, %n0], %pad {permutation_map = #kn} : memref<?x?xbf16>, vector<8x16xbf16>
      %vl = arith.extf %rl : vector<8x16xbf16> to vector<8x16xf32>
      %n = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %vp, %vl, %c : vector<64x16xf32>, vector<8x16xf32> into vector<64x8xf32>
      scf.yield %n : vector<64x8xf32>
    }
    vector.transfer_write %acc, %out[%m0, %n0] : vector<64x8xf32>, memref<?x?xf32>
    gpu.return
  }
}

// -----

// wgmma reads shared memory only: outside a gpu.func there is nothing to
// stage into, and the 64-row tile is an error (not a silent per-lane
// fallback).
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
gpu.module @kernels {
  func.func @not_a_kernel(%a: memref<64x16xbf16>, %b: memref<8x16xbf16>, %out: memref<64x8xf32>) {
    %c0 = arith.constant 0 : index
    %pad = arith.constant 0.0 : bf16
    %zero = arith.constant dense<0.0> : vector<64x8xf32>
    %ra = vector.transfer_read %a[%c0, %c0], %pad {in_bounds = [true, true]} : memref<64x16xbf16>, vector<64x16xbf16>
    %va = arith.extf %ra : vector<64x16xbf16> to vector<64x16xf32>
    %rb = vector.transfer_read %b[%c0, %c0], %pad {in_bounds = [true, true]} : memref<8x16xbf16>, vector<8x16xbf16>
    %vb = arith.extf %rb : vector<8x16xbf16> to vector<8x16xf32>
    // expected-error @+1 {{a 64-row tile (wgmma) reads its operands from shared memory: it needs a gpu.func and shared-memory=true}}
    %c = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vb, %zero : vector<64x16xf32>, vector<8x16xf32> into vector<64x8xf32>
    vector.transfer_write %c, %out[%c0, %c0] {in_bounds = [true, true]} : vector<64x8xf32>, memref<64x8xf32>
    return
  }
}

// -----

// A tile of any other row count has no instruction.
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
gpu.module @kernels {
  gpu.func @rows_32(%a: memref<32x16xbf16>, %b: memref<8x16xbf16>, %out: memref<32x8xf32>) kernel {
    %c0 = arith.constant 0 : index
    %pad = arith.constant 0.0 : bf16
    %zero = arith.constant dense<0.0> : vector<32x8xf32>
    %ra = vector.transfer_read %a[%c0, %c0], %pad {in_bounds = [true, true]} : memref<32x16xbf16>, vector<32x16xbf16>
    %va = arith.extf %ra : vector<32x16xbf16> to vector<32x16xf32>
    %rb = vector.transfer_read %b[%c0, %c0], %pad {in_bounds = [true, true]} : memref<8x16xbf16>, vector<8x16xbf16>
    %vb = arith.extf %rb : vector<8x16xbf16> to vector<8x16xf32>
    // expected-error @+1 {{not an MMA tile}}
    %c = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vb, %zero : vector<32x16xf32>, vector<8x16xf32> into vector<32x8xf32>
    vector.transfer_write %c, %out[%c0, %c0] {in_bounds = [true, true]} : vector<32x8xf32>, memref<32x8xf32>
    gpu.return
  }
}

// -----

// A 64-row tile is a warpgroup's: in a kernel known to run blocks of one warp
// it would be computed by a quarter of its threads. Checked where the block
// size is known.
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
gpu.module @kernels {
  gpu.func @one_warp_blocks(%a: memref<64x16xbf16>, %b: memref<8x16xbf16>, %out: memref<64x8xf32>) kernel attributes {known_block_size = array<i32: 32, 1, 1>} {
    %c0 = arith.constant 0 : index
    %pad = arith.constant 0.0 : bf16
    %zero = arith.constant dense<0.0> : vector<64x8xf32>
    %ra = vector.transfer_read %a[%c0, %c0], %pad {in_bounds = [true, true]} : memref<64x16xbf16>, vector<64x16xbf16>
    %va = arith.extf %ra : vector<64x16xbf16> to vector<64x16xf32>
    %rb = vector.transfer_read %b[%c0, %c0], %pad {in_bounds = [true, true]} : memref<8x16xbf16>, vector<8x16xbf16>
    %vb = arith.extf %rb : vector<8x16xbf16> to vector<8x16xf32>
    // expected-error @+1 {{a 64-row tile needs blocks of 128 threads, this kernel's are 32x1x1}}
    %c = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vb, %zero : vector<64x16xf32>, vector<8x16xf32> into vector<64x8xf32>
    vector.transfer_write %c, %out[%c0, %c0] {in_bounds = [true, true]} : vector<64x8xf32>, memref<64x8xf32>
    gpu.return
  }
}
