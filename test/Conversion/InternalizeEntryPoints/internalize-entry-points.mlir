// RUN: dsv3-opt %s --dsv3-internalize-entry-points | FileCheck %s
// RUN: dsv3-opt %s --dsv3-internalize-entry-points --drop-equivalent-buffer-results | FileCheck %s --check-prefix=DROP

// The runtime calls the packed dsv3_<entry> wrappers, never the entry
// functions, so the pass makes every function with dsv3.entry private; the
// attributes the packed wrappers are built from stay.

/// A public entry becomes private and keeps dsv3.entry, its result
/// description and its C-interface request.
// CHECK: func.func private @prefill(%{{.*}}: memref<2x4xi32>, %{{.*}}: memref<8x16xbf16>) -> (memref<2x4x32xf32>, memref<8x16xbf16>)
// CHECK-SAME: dsv3.entry = "prefill"
// CHECK-SAME: dsv3.result_destinations = array<i64: -1, 1>
// CHECK-SAME: dsv3.result_element_bytes = array<i64: 4, 2>
// CHECK-SAME: llvm.emit_c_interface
//
/// Why: once private, drop-equivalent-buffer-results may remove the result
/// that is the cache argument returned as is (updated in place), leaving
/// only the logits; the attributes still describe both results.
// DROP: func.func private @prefill(%{{.*}}: memref<2x4xi32>, %[[CACHE:.*]]: memref<8x16xbf16>) -> memref<2x4x32xf32>
// DROP-SAME: dsv3.result_destinations = array<i64: -1, 1>
// DROP: %[[LOGITS:.*]] = memref.alloc() : memref<2x4x32xf32>
// DROP-NEXT: return %[[LOGITS]] : memref<2x4x32xf32>
func.func @prefill(%tokens: memref<2x4xi32>, %cache: memref<8x16xbf16>)
    -> (memref<2x4x32xf32>, memref<8x16xbf16>)
    attributes {llvm.emit_c_interface, dsv3.entry = "prefill",
                dsv3.result_destinations = array<i64: -1, 1>,
                dsv3.result_element_bytes = array<i64: 4, 2>} {
  %logits = memref.alloc() : memref<2x4x32xf32>
  return %logits, %cache : memref<2x4x32xf32>, memref<8x16xbf16>
}

/// A function without dsv3.entry keeps its public visibility, so its
/// returned argument is not dropped either.
// CHECK: func.func @helper(%{{.*}}: memref<4xf32>) -> memref<4xf32> {
// DROP: func.func @helper(%[[X:.*]]: memref<4xf32>) -> memref<4xf32> {
// DROP-NEXT: return %[[X]] : memref<4xf32>
func.func @helper(%x: memref<4xf32>) -> memref<4xf32> {
  return %x : memref<4xf32>
}

/// An entry that is already private stays private (and keeps its attribute).
// CHECK: func.func private @already(%{{.*}}: memref<4xf32>) -> memref<4xf32> attributes {dsv3.entry = "already"}
func.func private @already(%x: memref<4xf32>) -> memref<4xf32>
    attributes {dsv3.entry = "already"} {
  return %x : memref<4xf32>
}

/// Callers of an entry are left as they are: only the callee's visibility
/// changes (and, once it is private, the dropped result disappears from the
/// call too).
// CHECK: func.func @caller(
// CHECK: call @prefill(%{{.*}}, %{{.*}}) : (memref<2x4xi32>, memref<8x16xbf16>) -> (memref<2x4x32xf32>, memref<8x16xbf16>)
// DROP: func.func @caller(
// DROP: call @prefill(%{{.*}}, %{{.*}}) : (memref<2x4xi32>, memref<8x16xbf16>) -> memref<2x4x32xf32>
func.func @caller(%tokens: memref<2x4xi32>, %cache: memref<8x16xbf16>) -> memref<2x4x32xf32> {
  %logits, %new_cache = call @prefill(%tokens, %cache)
      : (memref<2x4xi32>, memref<8x16xbf16>) -> (memref<2x4x32xf32>, memref<8x16xbf16>)
  return %logits : memref<2x4x32xf32>
}
