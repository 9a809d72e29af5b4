// RUN: dsv3-opt %s -split-input-file -verify-diagnostics --convert-to-llvm --dsv3-emit-packed-entry-points | FileCheck %s
// RUN: dsv3-opt %s -split-input-file -verify-diagnostics --convert-to-llvm --dsv3-emit-packed-entry-points=device=cuda | FileCheck %s --check-prefix=CUDA
// RUN: not dsv3-opt %s -split-input-file --convert-to-llvm --dsv3-emit-packed-entry-points=device=tpu 2>&1 | FileCheck %s --check-prefix=BAD

// The pass runs on the LLVM dialect; the inputs are written as func/memref
// and lowered by convert-to-llvm first, which also emits the
// `_mlir_ciface_` wrappers (and copies the dsv3.* attributes onto them).

/// An unknown device is rejected before anything is emitted.
// BAD: dsv3-emit-packed-entry-points: unknown device 'tpu' (expected cpu or cuda)

/// The KV-cache entry shape: three inputs, two results. Result 0 (f32
/// logits, destination -1) goes to the first output slot after the inputs,
/// args[3]; result 1 (the bf16 cache, destination 2) is copied back into
/// input 2's own descriptor, not into another slot. Each copy is sized
/// count(sizes) * element bytes, skipped when source == destination, and
/// followed by freeing the compiled code's allocation. The ciface wrapper
/// (which carries dsv3.entry too) gets no wrapper of its own, a function
/// without dsv3.entry gets none, and the CPU build adds thread control.

// CHECK-DAG: llvm.func @free(!llvm.ptr)
// CHECK-LABEL: llvm.func @_mlir_ciface_forward(
// CHECK-NOT: llvm.func @dsv3_
// CHECK-LABEL: llvm.func @dsv3_prefill(
// CHECK-SAME: %[[ARGS:.*]]: !llvm.ptr) {
// CHECK: %[[ONE:.*]] = llvm.mlir.constant(1 : i64) : i64
// CHECK: %[[SLOT:.*]] = llvm.alloca %[[ONE]] x !llvm.struct<(struct<(ptr, ptr, i64, array<3 x i64>, array<3 x i64>)>, struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>)>
// CHECK: %[[P0:.*]] = llvm.getelementptr %[[ARGS]][0] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[IN0:.*]] = llvm.load %[[P0]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[P1:.*]] = llvm.getelementptr %[[ARGS]][1] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[IN1:.*]] = llvm.load %[[P1]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[P2:.*]] = llvm.getelementptr %[[ARGS]][2] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[IN2:.*]] = llvm.load %[[P2]] : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.call @_mlir_ciface_forward(%[[SLOT]], %[[IN0]], %[[IN1]], %[[IN2]])
// CHECK: %[[RES:.*]] = llvm.load %[[SLOT]]
//
// Result 0: the logits, into args[3].
// CHECK: %[[D0:.*]] = llvm.extractvalue %[[RES]][0]
// CHECK: %[[ALLOC0:.*]] = llvm.extractvalue %[[D0]][0]
// CHECK: %[[ALIGNED0:.*]] = llvm.extractvalue %[[D0]][1]
// CHECK: %[[OFF0:.*]] = llvm.extractvalue %[[D0]][2]
// CHECK: %[[EB0:.*]] = llvm.mlir.constant(4 : i64) : i64
// CHECK: %[[S00:.*]] = llvm.extractvalue %[[D0]][3, 0]
// CHECK: %[[N00:.*]] = llvm.mul %[[ONE]], %[[S00]]
// CHECK: %[[S01:.*]] = llvm.extractvalue %[[D0]][3, 1]
// CHECK: %[[N01:.*]] = llvm.mul %[[N00]], %[[S01]]
// CHECK: %[[S02:.*]] = llvm.extractvalue %[[D0]][3, 2]
// CHECK: %[[N02:.*]] = llvm.mul %[[N01]], %[[S02]]
// CHECK: %[[BYTES0:.*]] = llvm.mul %[[N02]], %[[EB0]]
// CHECK: %[[SOFF0:.*]] = llvm.mul %[[OFF0]], %[[EB0]]
// CHECK: %[[SRC0:.*]] = llvm.getelementptr %[[ALIGNED0]][%[[SOFF0]]] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CHECK: %[[P3:.*]] = llvm.getelementptr %[[ARGS]][3] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[OUT:.*]] = llvm.load %[[P3]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[OUTAP:.*]] = llvm.getelementptr %[[OUT]][1] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[OUTA:.*]] = llvm.load %[[OUTAP]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[OUTOP:.*]] = llvm.getelementptr %[[OUT]][2] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[OUTO:.*]] = llvm.load %[[OUTOP]] : !llvm.ptr -> i64
// CHECK: %[[DOFF0:.*]] = llvm.mul %[[OUTO]], %[[EB0]]
// CHECK: %[[DST0:.*]] = llvm.getelementptr %[[OUTA]][%[[DOFF0]]] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CHECK: %[[SAME0:.*]] = llvm.icmp "eq" %[[SRC0]], %[[DST0]] : !llvm.ptr
// CHECK: llvm.cond_br %[[SAME0]], ^[[NEXT0:.*]], ^[[COPY0:.*]]
// CHECK: ^[[COPY0]]:
// CHECK-NEXT: "llvm.intr.memcpy"(%[[DST0]], %[[SRC0]], %[[BYTES0]]) <{isVolatile = false}>
// CHECK-NEXT: llvm.call @free(%[[ALLOC0]])
// CHECK-NEXT: llvm.br ^[[NEXT0]]
// CHECK: ^[[NEXT0]]:
//
// Result 1: the cache, back into input 2 (no args[4] slot is read).
// CHECK-NOT: llvm.getelementptr %[[ARGS]]
// CHECK: %[[D1:.*]] = llvm.extractvalue %[[RES]][1]
// CHECK: %[[ALLOC1:.*]] = llvm.extractvalue %[[D1]][0]
// CHECK: %[[ALIGNED1:.*]] = llvm.extractvalue %[[D1]][1]
// CHECK: %[[OFF1:.*]] = llvm.extractvalue %[[D1]][2]
// CHECK: %[[EB1:.*]] = llvm.mlir.constant(2 : i64) : i64
// CHECK: %[[S10:.*]] = llvm.extractvalue %[[D1]][3, 0]
// CHECK: %[[N10:.*]] = llvm.mul %[[ONE]], %[[S10]]
// CHECK: %[[S11:.*]] = llvm.extractvalue %[[D1]][3, 1]
// CHECK: %[[N11:.*]] = llvm.mul %[[N10]], %[[S11]]
// CHECK: %[[BYTES1:.*]] = llvm.mul %[[N11]], %[[EB1]]
// CHECK: %[[SOFF1:.*]] = llvm.mul %[[OFF1]], %[[EB1]]
// CHECK: %[[SRC1:.*]] = llvm.getelementptr %[[ALIGNED1]][%[[SOFF1]]]
// CHECK-NOT: llvm.getelementptr %[[ARGS]]
// CHECK: %[[CAP:.*]] = llvm.getelementptr %[[IN2]][1] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[CA:.*]] = llvm.load %[[CAP]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[COP:.*]] = llvm.getelementptr %[[IN2]][2] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[CO:.*]] = llvm.load %[[COP]] : !llvm.ptr -> i64
// CHECK: %[[DOFF1:.*]] = llvm.mul %[[CO]], %[[EB1]]
// CHECK: %[[DST1:.*]] = llvm.getelementptr %[[CA]][%[[DOFF1]]]
// CHECK: %[[SAME1:.*]] = llvm.icmp "eq" %[[SRC1]], %[[DST1]] : !llvm.ptr
// CHECK: llvm.cond_br %[[SAME1]], ^[[NEXT1:.*]], ^[[COPY1:.*]]
// CHECK: ^[[COPY1]]:
// CHECK-NEXT: "llvm.intr.memcpy"(%[[DST1]], %[[SRC1]], %[[BYTES1]]) <{isVolatile = false}>
// CHECK-NEXT: llvm.call @free(%[[ALLOC1]])
// CHECK-NEXT: llvm.br ^[[NEXT1]]
// CHECK: ^[[NEXT1]]:
// CHECK-NEXT: llvm.return
// CHECK-NEXT: }
// CHECK-NOT: llvm.func @dsv3_
// CHECK: llvm.func @omp_set_num_threads(i32)
// CHECK-NOT: llvm.func @dsv3_
// CHECK: llvm.func @dsv3_set_num_threads(%[[N:.*]]: i32) {
// CHECK-NEXT: llvm.call @omp_set_num_threads(%[[N]]) : (i32) -> ()
// CHECK-NEXT: llvm.return
// CHECK-NOT: llvm.func @dsv3_

/// Same entry with device=cuda: the result buffers are device memory, so the
/// copy is mgpuMemcpy and the free mgpuMemFree, both on the null stream;
/// no host memcpy, no free(), and no OpenMP thread control.

// CUDA-DAG: llvm.func @mgpuMemcpy(!llvm.ptr, !llvm.ptr, i64, !llvm.ptr)
// CUDA-DAG: llvm.func @mgpuMemFree(!llvm.ptr, !llvm.ptr)
// CUDA-LABEL: llvm.func @dsv3_prefill(
// CUDA-SAME: %[[ARGS:.*]]: !llvm.ptr) {
// CUDA-NOT: {{llvm.intr.memcpy|@free}}
// CUDA: llvm.call @_mlir_ciface_forward
// CUDA: %[[NULL:.*]] = llvm.mlir.zero : !llvm.ptr
// CUDA: %[[RES:.*]] = llvm.load
// CUDA: %[[D0:.*]] = llvm.extractvalue %[[RES]][0]
// CUDA: %[[ALLOC0:.*]] = llvm.extractvalue %[[D0]][0]
// CUDA: %[[EB0:.*]] = llvm.mlir.constant(4 : i64) : i64
// CUDA: llvm.extractvalue %[[D0]][3, 2]
// CUDA-NEXT: llvm.mul
// CUDA-NEXT: %[[BYTES0:.*]] = llvm.mul %{{.*}}, %[[EB0]] : i64
// CUDA: %[[SRC0:.*]] = llvm.getelementptr %{{.*}}[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CUDA: llvm.getelementptr %[[ARGS]][3]
// CUDA: %[[DST0:.*]] = llvm.getelementptr %{{.*}}[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CUDA: %[[SAME0:.*]] = llvm.icmp "eq" %[[SRC0]], %[[DST0]]
// CUDA: llvm.cond_br %[[SAME0]], ^[[NEXT0:.*]], ^[[COPY0:.*]]
// CUDA: ^[[COPY0]]:
// CUDA-NEXT: llvm.call @mgpuMemcpy(%[[DST0]], %[[SRC0]], %[[BYTES0]], %[[NULL]])
// CUDA-NEXT: llvm.call @mgpuMemFree(%[[ALLOC0]], %[[NULL]])
// CUDA-NEXT: llvm.br ^[[NEXT0]]
// CUDA: ^[[NEXT0]]:
// CUDA: %[[D1:.*]] = llvm.extractvalue %[[RES]][1]
// CUDA: %[[ALLOC1:.*]] = llvm.extractvalue %[[D1]][0]
// CUDA: llvm.call @mgpuMemcpy(%{{.*}}, %{{.*}}, %{{.*}}, %[[NULL]])
// CUDA-NEXT: llvm.call @mgpuMemFree(%[[ALLOC1]], %[[NULL]])
// CUDA-NOT: {{llvm.intr.memcpy|@free}}
// CUDA: llvm.return
// CUDA-NEXT: }
// CUDA-NOT: set_num_threads
// CUDA: // -----

func.func @forward(%tokens: memref<2x4xi32>, %positions: memref<2x4xi64>,
                   %cache: memref<8x16xbf16>)
    -> (memref<2x4x32xf32>, memref<8x16xbf16>)
    attributes {llvm.emit_c_interface, dsv3.entry = "prefill",
                dsv3.result_destinations = array<i64: -1, 2>,
                dsv3.result_element_bytes = array<i64: 4, 2>} {
  %logits = memref.alloc() : memref<2x4x32xf32>
  return %logits, %cache : memref<2x4x32xf32>, memref<8x16xbf16>
}

func.func @helper(%x: memref<4xf32>) -> memref<4xf32>
    attributes {llvm.emit_c_interface} {
  return %x : memref<4xf32>
}

// -----

/// drop-equivalent-buffer-results removed the in-place cache result: the
/// function returns the logits alone (one descriptor, not a struct of
/// them), so only destination -1 is copied, into args[3], and the
/// descriptor is used without an extractvalue from a result struct. The
/// rank-0 scalar output case is the next function: its byte count is just
/// 1 * element bytes.

// CHECK-LABEL: llvm.func @dsv3_decode(
// CHECK-SAME: %[[ARGS:.*]]: !llvm.ptr) {
// CHECK: %[[SLOT:.*]] = llvm.alloca %{{.*}} x !llvm.struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>
// CHECK: %[[P2:.*]] = llvm.getelementptr %[[ARGS]][2]
// CHECK-NEXT: %[[IN2:.*]] = llvm.load %[[P2]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT: llvm.call @_mlir_ciface_decode(%[[SLOT]], %{{.*}}, %{{.*}}, %[[IN2]])
// CHECK-NEXT: %[[D:.*]] = llvm.load %[[SLOT]] : !llvm.ptr -> !llvm.struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>
// CHECK-NEXT: %[[ALLOC:.*]] = llvm.extractvalue %[[D]][0]
// CHECK: llvm.mlir.constant(4 : i64)
// CHECK: llvm.getelementptr %[[ARGS]][3] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: "llvm.intr.memcpy"
// CHECK-NEXT: llvm.call @free(%[[ALLOC]])
// CHECK-NOT: llvm.intr.memcpy
// CHECK: llvm.return

// CHECK-LABEL: llvm.func @dsv3_score(
// CHECK: %[[ONE:.*]] = llvm.mlir.constant(1 : i64) : i64
// CHECK: %[[D:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.struct<(ptr, ptr, i64)>
// CHECK: %[[EB:.*]] = llvm.mlir.constant(8 : i64) : i64
// CHECK-NEXT: %[[BYTES:.*]] = llvm.mul %[[ONE]], %[[EB]] : i64
// CHECK: llvm.getelementptr %{{.*}}[1] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: "llvm.intr.memcpy"(%{{.*}}, %{{.*}}, %[[BYTES]])
// CHECK: llvm.func @dsv3_set_num_threads

func.func @decode(%tokens: memref<2x1xi32>, %positions: memref<2x1xi64>,
                  %cache: memref<8x16xbf16>) -> memref<2x32xf32>
    attributes {llvm.emit_c_interface, dsv3.entry = "decode",
                dsv3.result_destinations = array<i64: -1, 2>,
                dsv3.result_element_bytes = array<i64: 4, 2>} {
  %logits = memref.alloc() : memref<2x32xf32>
  return %logits : memref<2x32xf32>
}

func.func @score(%x: memref<4xf64>) -> memref<f64>
    attributes {llvm.emit_c_interface, dsv3.entry = "score",
                dsv3.result_destinations = array<i64: -1>,
                dsv3.result_element_bytes = array<i64: 8>} {
  %s = memref.alloc() : memref<f64>
  return %s : memref<f64>
}

// -----

/// Every result updated in place and dropped: the function returns nothing,
/// so the wrapper only forwards the inputs (no result slot, no copy, no
/// free). An existing omp_set_num_threads declaration is reused.

// CHECK-LABEL: llvm.func @dsv3_update(
// CHECK-SAME: %[[ARGS:.*]]: !llvm.ptr) {
// CHECK-NOT: llvm.alloca
// CHECK: %[[P0:.*]] = llvm.getelementptr %[[ARGS]][0]
// CHECK: %[[IN0:.*]] = llvm.load %[[P0]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[P1:.*]] = llvm.getelementptr %[[ARGS]][1]
// CHECK: %[[IN1:.*]] = llvm.load %[[P1]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT: llvm.call @_mlir_ciface_update(%[[IN0]], %[[IN1]]) : (!llvm.ptr, !llvm.ptr) -> ()
// CHECK-NEXT: llvm.return
// CHECK-NEXT: }
// CHECK: llvm.func @dsv3_set_num_threads(
// CHECK-NEXT: llvm.call @omp_set_num_threads

// CUDA-LABEL: llvm.func @dsv3_update(
// CUDA-NOT: llvm.mlir.zero
// CUDA: llvm.call @_mlir_ciface_update
// CUDA-NEXT: llvm.return
// CUDA-NOT: set_num_threads
// CUDA: // -----

func.func private @omp_set_num_threads(i32)

func.func @update(%tokens: memref<2x1xi32>, %cache: memref<8x16xbf16>)
    attributes {llvm.emit_c_interface, dsv3.entry = "update",
                dsv3.result_destinations = array<i64: 1>,
                dsv3.result_element_bytes = array<i64: 2>} {
  return
}

// -----

/// A module without entries is left alone: no wrapper, no thread control.

// CHECK-LABEL: llvm.func @_mlir_ciface_plain(
// CHECK-NOT: dsv3_
// CHECK: // -----

func.func @plain(%x: memref<4xf32>) -> memref<4xf32>
    attributes {llvm.emit_c_interface} {
  return %x : memref<4xf32>
}

// -----

/// An entry without its C interface cannot be wrapped.

// expected-error @+1 {{dsv3 entry point without its C interface, dsv3.result_destinations or dsv3.result_element_bytes}}
func.func @no_ciface(%x: memref<4xf32>) -> memref<4xf32>
    attributes {dsv3.entry = "no_ciface",
                dsv3.result_destinations = array<i64: -1>,
                dsv3.result_element_bytes = array<i64: 4>} {
  return %x : memref<4xf32>
}

// -----

/// Nor one without dsv3.result_destinations.

// expected-error @+1 {{dsv3 entry point without its C interface}}
func.func @no_destinations(%x: memref<4xf32>) -> memref<4xf32>
    attributes {llvm.emit_c_interface, dsv3.entry = "no_destinations",
                dsv3.result_element_bytes = array<i64: 4>} {
  return %x : memref<4xf32>
}

// -----

/// Destinations and element sizes must describe the same results.

// expected-error @+1 {{dsv3 entry point without its C interface}}
func.func @size_mismatch(%x: memref<4xf32>) -> memref<4xf32>
    attributes {llvm.emit_c_interface, dsv3.entry = "size_mismatch",
                dsv3.result_destinations = array<i64: -1>,
                dsv3.result_element_bytes = array<i64: 4, 4>} {
  return %x : memref<4xf32>
}

// -----

/// Two outputs (destination -1) cannot have been dropped, so a function
/// returning one result does not match its description.

// expected-error @+1 {{dsv3 entry point returns 1 results; dsv3.result_destinations describes 2 with 2 outputs}}
func.func @count_mismatch(%x: memref<4xf32>) -> memref<4xf32>
    attributes {llvm.emit_c_interface, dsv3.entry = "count_mismatch",
                dsv3.result_destinations = array<i64: -1, -1>,
                dsv3.result_element_bytes = array<i64: 4, 4>} {
  return %x : memref<4xf32>
}
