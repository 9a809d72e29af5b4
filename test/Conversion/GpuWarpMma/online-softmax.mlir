// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(gpu.module(dsv3-gpu-warp-mma))" | FileCheck %s
// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(gpu.module(dsv3-gpu-warp-mma))" | dsv3-opt --split-input-file --pass-pipeline="builtin.module(gpu.module(convert-nvgpu-to-nvvm,convert-vector-to-llvm,convert-gpu-to-nvvm,convert-nvvm-to-llvm,reconcile-unrealized-casts))" | FileCheck %s --check-prefix=PTX

// One step of the fused MLA attention's online softmax, as
// emitFlashLatentAttention writes it (16-row tiles: mma.sync): the scores
// tiles S (two 16 x 8 here), masked with the column numbers (vector.step
// broadcast over the rows, plus the chunk's first position) against each
// row's last visible position (a per-row read [16 x 1]), the row max
// (multi_reduction over the columns, then across the four threads of a row
// with two xor shuffles), exp(s - max), and o += bf16(P) . B with P already
// in registers: the accumulator layout of two 16 x 8 tiles side by side is
// mma.sync's A fragment, so the thread packs its pairs without shared
// memory.

// CHECK-LABEL: gpu.func @online_softmax_step
// The per-row limits: rows g and g + 8, masked past the end.
// CHECK: %[[LANE:.*]] = gpu.lane_id
// CHECK: %[[G:.*]] = arith.divui %[[LANE]], %c4{{.*}} : index
// CHECK: memref.dim %{{.*}}, %c1{{.*}} : memref<1x?xindex>
// CHECK: memref.load %{{.*}} : memref<1x?xindex>
// CHECK: arith.select
// CHECK: %[[G8:.*]] = arith.addi %[[G]], %c8{{.*}} : index
// CHECK: memref.load %{{.*}} : memref<1x?xindex>
// Each value's column number: 2 (t % 4) (+ 1) (+ 8 for the second tile's) + t0.
// CHECK: %[[T:.*]] = arith.remui %{{.*}}, %c4{{.*}} : index
// CHECK: %[[PAIR:.*]] = arith.addi %[[T]], %[[T]] : index
// CHECK: arith.addi %[[PAIR]], %c1{{.*}} : index
// CHECK: arith.cmpi ule, %{{.*}} : index
// CHECK: arith.select %{{.*}} : f32
// The row max: a thread's own values, then xor 1 and xor 2 within the row.
// CHECK: arith.maxnumf %{{.*}} : f32
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32{{.*}}, %c32_i32
// CHECK: arith.maxnumf %{{.*}} : f32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32{{.*}}, %c32_i32
// CHECK: math.exp %{{.*}} : f32
// P as mma.sync's A: pairs packed from registers, no ldmatrix for A.
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: vector.bitcast %{{.*}} : vector<2xbf16> to vector<1xi32>
// CHECK: nvgpu.ldmatrix %{{.*}} {numTiles = 2 : i32, transpose = false}
// CHECK-NOT: numTiles = 4
// CHECK: nvvm.mma.sync
// CHECK-NOT: vector<16x
// CHECK: gpu.return

// PTX-LABEL: llvm.func @online_softmax_step
// PTX: nvvm.shfl.sync bfly
// PTX: nvvm.mma.sync

#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
#kn = affine_map<(b, t, c) -> (c, t)>
gpu.module @kernels {
  gpu.func @online_softmax_step(%s0: memref<16x8xf32>, %s1: memref<16x8xf32>, %limits: memref<1x?xindex>,
                                %latent: memref<1x?x32xf32>, %out: memref<16x8xf32>, %m0: index, %t0: index) kernel {
    %c0 = arith.constant 0 : index
    %pad = arith.constant 0.0 : f32
    %ninf = arith.constant dense<0xFF800000> : vector<16x8xf32>
    %ninfRow = arith.constant dense<0xFF800000> : vector<16xf32>
    %zero16 = arith.constant dense<0.0> : vector<16x16xf32>
    %zero = arith.constant dense<0.0> : vector<16x8xf32>
    %lr = vector.transfer_read %limits[%c0, %m0], %c0 : memref<1x?xindex>, vector<16xindex>
    %limit = vector.shape_cast %lr : vector<16xindex> to vector<16x1xindex>
    %limitTile = vector.broadcast %limit : vector<16x1xindex> to vector<16x8xindex>
    %step = vector.step : vector<8xindex>
    %cols = vector.broadcast %step : vector<8xindex> to vector<16x8xindex>
    %first = vector.broadcast %t0 : index to vector<16x8xindex>
    %pos0 = arith.addi %cols, %first : vector<16x8xindex>
    %c8 = arith.constant 8 : index
    %t8 = arith.addi %t0, %c8 : index
    %first8 = vector.broadcast %t8 : index to vector<16x8xindex>
    %pos1 = arith.addi %cols, %first8 : vector<16x8xindex>
    %vis0 = arith.cmpi ule, %pos0, %limitTile : vector<16x8xindex>
    %vis1 = arith.cmpi ule, %pos1, %limitTile : vector<16x8xindex>
    // The scores tiles: the accumulators of two contractions in the kernel;
    // loop-carried values here.
    %s:2 = scf.for %i = %c0 to %c8 step %c8 iter_args(%a0 = %zero, %a1 = %zero) -> (vector<16x8xf32>, vector<16x8xf32>) {
      scf.yield %a0, %a1 : vector<16x8xf32>, vector<16x8xf32>
    }
    %m0s = arith.select %vis0, %s#0, %ninf : vector<16x8xi1>, vector<16x8xf32>
    %m1s = arith.select %vis1, %s#1, %ninf : vector<16x8xi1>, vector<16x8xf32>
    %r0 = vector.multi_reduction <maxnumf>, %m0s, %ninfRow [1] : vector<16x8xf32> to vector<16xf32>
    %c0r = vector.shape_cast %r0 : vector<16xf32> to vector<16x1xf32>
    %r1 = vector.multi_reduction <maxnumf>, %m1s, %ninfRow [1] : vector<16x8xf32> to vector<16xf32>
    %c1r = vector.shape_cast %r1 : vector<16xf32> to vector<16x1xf32>
    %max = arith.maxnumf %c0r, %c1r : vector<16x1xf32>
    %maxTile = vector.broadcast %max : vector<16x1xf32> to vector<16x8xf32>
    %d0 = arith.subf %m0s, %maxTile : vector<16x8xf32>
    %p0 = math.exp %d0 : vector<16x8xf32>
    %d1 = arith.subf %m1s, %maxTile : vector<16x8xf32>
    %p1 = math.exp %d1 : vector<16x8xf32>
    %pa = vector.insert_strided_slice %p0, %zero16 {offsets = [0, 0], strides = [1, 1]} : vector<16x8xf32> into vector<16x16xf32>
    %pb = vector.insert_strided_slice %p1, %pa {offsets = [0, 8], strides = [1, 1]} : vector<16x8xf32> into vector<16x16xf32>
    %pr = arith.truncf %pb : vector<16x16xf32> to vector<16x16xbf16>
    %pe = arith.extf %pr : vector<16x16xbf16> to vector<16x16xf32>
    %rb = vector.transfer_read %latent[%c0, %t0, %c0], %pad {permutation_map = #kn} : memref<1x?x32xf32>, vector<8x16xf32>
    %rbr = arith.truncf %rb : vector<8x16xf32> to vector<8x16xbf16>
    %vb = arith.extf %rbr : vector<8x16xbf16> to vector<8x16xf32>
    %o = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %pe, %vb, %zero : vector<16x16xf32>, vector<8x16xf32> into vector<16x8xf32>
    vector.transfer_write %o, %out[%c0, %c0] {in_bounds = [true, true]} : vector<16x8xf32>, memref<16x8xf32>
    gpu.return
  }
}

// -----

// The same on 64-row tiles (wgmma): P, a 64 x 32 accumulator, sliced into
// its two 16-column K steps (fragment values 0-7 and 8-15 of each thread),
// and copied into a core-matrix buffer for wgmma, which reads A from shared
// memory: each thread stores its 8 values (rounded) at [r / 8][c / 8][r %
// 8][c % 8], between a barrier and the proxy fence plus barrier -- once for
// both column tiles of latent that read it.

// CHECK-LABEL: gpu.func @probabilities_as_wgmma_operand
// CHECK-SAME: workgroup(%[[SB:.*]] : memref<4x2x8x8xbf16, 3> {{.*}}, %[[SP:.*]] : memref<8x2x8x8xbf16, 3> {{.*}}, %[[SB2:.*]] : memref<4x2x8x8xbf16, 3> {{[^,]*}})
// CHECK: gpu.shuffle  xor
// CHECK: math.exp %{{.*}} : f32
// CHECK: gpu.barrier
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: memref.store %{{.*}}, %[[SP]][%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}] : memref<8x2x8x8xbf16, 3>
// CHECK-COUNT-7: memref.store %{{.*}}, %[[SP]]
// CHECK: nvvm.fence.proxy
// CHECK-NEXT: gpu.barrier
// CHECK: nvvm.wgmma.fence.aligned
// CHECK-NEXT: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 32, k = 16>
// CHECK: memref.store %{{.*}}, %[[SB2]]
// CHECK-NOT: %[[SP]]
// CHECK: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 32, k = 16>
// CHECK-NOT: vector<64x

// PTX-LABEL: llvm.func @probabilities_as_wgmma_operand
// PTX: wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16

#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
#kn = affine_map<(b, t, c) -> (c, t)>
gpu.module @kernels {
  gpu.func @probabilities_as_wgmma_operand(%latent: memref<1x?x64xf32>, %out: memref<64x64xf32>, %t0: index) kernel {
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %pad = arith.constant 0.0 : f32
    %zero = arith.constant dense<0.0> : vector<64x32xf32>
    %ninfRow = arith.constant dense<0xFF800000> : vector<64xf32>
    %s = scf.for %i = %c0 to %c16 step %c16 iter_args(%a = %zero) -> (vector<64x32xf32>) {
      scf.yield %a : vector<64x32xf32>
    }
    %r = vector.multi_reduction <maxnumf>, %s, %ninfRow [1] : vector<64x32xf32> to vector<64xf32>
    %max = vector.shape_cast %r : vector<64xf32> to vector<64x1xf32>
    %maxTile = vector.broadcast %max : vector<64x1xf32> to vector<64x32xf32>
    %d = arith.subf %s, %maxTile : vector<64x32xf32>
    %p = math.exp %d : vector<64x32xf32>
    %p1 = vector.extract_strided_slice %p {offsets = [0, 16], sizes = [64, 16], strides = [1, 1]} : vector<64x32xf32> to vector<64x16xf32>
    %pr = arith.truncf %p1 : vector<64x16xf32> to vector<64x16xbf16>
    %pe = arith.extf %pr : vector<64x16xbf16> to vector<64x16xf32>
    %rb = vector.transfer_read %latent[%c0, %t0, %c0], %pad {permutation_map = #kn} : memref<1x?x64xf32>, vector<32x16xf32>
    %rbr = arith.truncf %rb : vector<32x16xf32> to vector<32x16xbf16>
    %vb = arith.extf %rbr : vector<32x16xbf16> to vector<32x16xf32>
    %o = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %pe, %vb, %zero : vector<64x16xf32>, vector<32x16xf32> into vector<64x32xf32>
    vector.transfer_write %o, %out[%c0, %c0] {in_bounds = [true, true]} : vector<64x32xf32>, memref<64x64xf32>
    %c32 = arith.constant 32 : index
    %rb2 = vector.transfer_read %latent[%c0, %t0, %c32], %pad {permutation_map = #kn} : memref<1x?x64xf32>, vector<32x16xf32>
    %rbr2 = arith.truncf %rb2 : vector<32x16xf32> to vector<32x16xbf16>
    %vb2 = arith.extf %rbr2 : vector<32x16xbf16> to vector<32x16xf32>
    %o2 = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %pe, %vb2, %zero : vector<64x16xf32>, vector<32x16xf32> into vector<64x32xf32>
    vector.transfer_write %o2, %out[%c0, %c32] {in_bounds = [true, true]} : vector<64x32xf32>, memref<64x64xf32>
    gpu.return
  }
}

// -----

// A per-row value (a split's row max and sum) is written by the first of
// the four threads that hold each row: rows g and g + 8, guarded by the
// write's bounds.

// CHECK-LABEL: gpu.func @row_value_written
// CHECK: gpu.lane_id
// CHECK: %[[WLANE:.*]] = gpu.lane_id
// CHECK: %[[T:.*]] = arith.remui %[[WLANE]], %c4{{.*}} : index
// CHECK: %[[FIRST:.*]] = arith.cmpi eq, %[[T]], %c0{{.*}} : index
// CHECK: %[[IN:.*]] = arith.cmpi ult, %{{.*}}, %{{.*}} : index
// CHECK: %[[BOTH:.*]] = arith.andi %[[IN]], %[[FIRST]] : i1
// CHECK: scf.if %[[BOTH]] {
// CHECK: memref.store %{{.*}} : memref<?x1xf32>
// CHECK: arith.addi %{{.*}}, %c8{{.*}} : index
// CHECK: scf.if
// CHECK: memref.store %{{.*}} : memref<?x1xf32>
// CHECK-NOT: memref.store
// CHECK: gpu.return

gpu.module @kernels {
  gpu.func @row_value_written(%out: memref<?x1xf32>) kernel {
    %c0 = arith.constant 0 : index
    %c8 = arith.constant 8 : index
    %zero = arith.constant dense<0.0> : vector<16x1xf32>
    %s = scf.for %i = %c0 to %c8 step %c8 iter_args(%a = %zero) -> (vector<16x1xf32>) {
      scf.yield %a : vector<16x1xf32>
    }
    vector.transfer_write %s, %out[%c0, %c0] {in_bounds = [false, true]} : vector<16x1xf32>, memref<?x1xf32>
    gpu.return
  }
}
