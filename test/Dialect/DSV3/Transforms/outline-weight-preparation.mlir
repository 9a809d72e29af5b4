// RUN: dsv3-opt %s -split-input-file --dsv3-outline-weight-preparation | FileCheck %s

/// A concatenation of two weight arguments of the forward function (every
/// caller passes entry weights there) moves into @prepare; the forward
/// function and both entries take the prepared weight instead, and the two
/// weights only the preparation read leave them.
// CHECK-LABEL: func.func private @forward
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<2x8xf32>, %[[I:[a-z0-9]+]]: index, %[[W:[a-z0-9]+]]: tensor<8x8xbf16>, %[[P:[a-z0-9]+]]: tensor<2x12x8xbf16>)
// CHECK-NOT: tensor.concat
// CHECK: tensor.extract_slice %[[P]][%[[I]], 0, 0]
// CHECK-LABEL: func.func @prefill
// CHECK-SAME: (%{{.*}}: tensor<2x8xf32> {dsv3.input = "tokens"}, %[[EI:.*]]: index {dsv3.input = "positions"}, %[[EW:.*]]: tensor<8x8xbf16> {dsv3.weight = "w"}, %[[EP:.*]]: tensor<2x12x8xbf16> {dsv3.prepared, dsv3.weight = "fused"})
// CHECK: call @forward(%{{.*}}, %[[EI]], %[[EW]], %[[EP]])
// CHECK-LABEL: func.func @decode
// CHECK-SAME: {dsv3.prepared, dsv3.weight = "fused"}
// CHECK-LABEL: func.func @prepare
// CHECK-SAME: (%[[A:.*]]: tensor<2x4x8xbf16> {dsv3.source = "a.{layer}", dsv3.weight = "a"}, %[[B:.*]]: tensor<2x8x8xbf16> {dsv3.source = "b.{layer}", dsv3.weight = "b"})
// CHECK-SAME: -> (tensor<2x12x8xbf16> {dsv3.weight = "fused"})
// CHECK-SAME: dsv3.entry = "prepare"
// CHECK-SAME: dsv3.result_destinations = array<i64: -1>, dsv3.result_element_bytes = array<i64: 2>
// CHECK-SAME: llvm.emit_c_interface
// CHECK: %[[CAT:.*]] = tensor.concat dim(1) %[[A]], %[[B]] : (tensor<2x4x8xbf16>, tensor<2x8x8xbf16>) -> tensor<2x12x8xbf16>
// CHECK-NEXT: return %[[CAT]]
func.func private @forward(%x: tensor<2x8xf32>, %i: index, %w: tensor<8x8xbf16>, %a: tensor<2x4x8xbf16>,
    %b: tensor<2x8x8xbf16>) -> (tensor<12x8xbf16>, tensor<8x8xbf16>) {
  %cat = tensor.concat dim(1) %a, %b {dsv3.prepared_weight = "fused"} : (tensor<2x4x8xbf16>, tensor<2x8x8xbf16>) -> tensor<2x12x8xbf16>
  %layer = tensor.extract_slice %cat[%i, 0, 0] [1, 12, 8] [1, 1, 1] : tensor<2x12x8xbf16> to tensor<12x8xbf16>
  return %layer, %w : tensor<12x8xbf16>, tensor<8x8xbf16>
}
func.func @prefill(%x: tensor<2x8xf32> {dsv3.input = "tokens"}, %i: index {dsv3.input = "positions"},
    %w: tensor<8x8xbf16> {dsv3.weight = "w"},
    %a: tensor<2x4x8xbf16> {dsv3.weight = "a", dsv3.source = "a.{layer}"},
    %b: tensor<2x8x8xbf16> {dsv3.weight = "b", dsv3.source = "b.{layer}"}) -> (tensor<12x8xbf16>, tensor<8x8xbf16>)
    attributes {dsv3.entry = "prefill"} {
  %r:2 = call @forward(%x, %i, %w, %a, %b) : (tensor<2x8xf32>, index, tensor<8x8xbf16>, tensor<2x4x8xbf16>, tensor<2x8x8xbf16>) -> (tensor<12x8xbf16>, tensor<8x8xbf16>)
  return %r#0, %r#1 : tensor<12x8xbf16>, tensor<8x8xbf16>
}
func.func @decode(%x: tensor<2x8xf32> {dsv3.input = "tokens"}, %i: index {dsv3.input = "positions"},
    %w: tensor<8x8xbf16> {dsv3.weight = "w"},
    %a: tensor<2x4x8xbf16> {dsv3.weight = "a", dsv3.source = "a.{layer}"},
    %b: tensor<2x8x8xbf16> {dsv3.weight = "b", dsv3.source = "b.{layer}"}) -> (tensor<12x8xbf16>, tensor<8x8xbf16>)
    attributes {dsv3.entry = "decode"} {
  %r:2 = call @forward(%x, %i, %w, %a, %b) : (tensor<2x8xf32>, index, tensor<8x8xbf16>, tensor<2x4x8xbf16>, tensor<2x8x8xbf16>) -> (tensor<12x8xbf16>, tensor<8x8xbf16>)
  return %r#0, %r#1 : tensor<12x8xbf16>, tensor<8x8xbf16>
}

// -----

/// Negative: an operation on a weight and an activation depends on the call,
/// and a weight argument that one caller fills with a non-weight is not a
/// weight: nothing moves, no @prepare.
// CHECK-LABEL: func.func private @forward
// CHECK: tensor.concat dim(0) %{{.*}}, %{{.*}}
// CHECK: tensor.concat dim(0) %{{.*}}, %{{.*}}
// CHECK-NOT: func.func @prepare
func.func private @forward(%x: tensor<4x8xf32>, %w: tensor<4x8xf32>, %v: tensor<4x8xf32>, %u: tensor<4x8xf32>) -> (tensor<8x8xf32>, tensor<8x8xf32>) {
  %mixed = tensor.concat dim(0) %x, %w : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
  %notWeights = tensor.concat dim(0) %v, %u : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
  return %mixed, %notWeights : tensor<8x8xf32>, tensor<8x8xf32>
}
func.func @prefill(%x: tensor<4x8xf32> {dsv3.input = "tokens"}, %w: tensor<4x8xf32> {dsv3.weight = "w"},
    %v: tensor<4x8xf32> {dsv3.weight = "v"}) -> (tensor<8x8xf32>, tensor<8x8xf32>) attributes {dsv3.entry = "prefill"} {
  %r:2 = call @forward(%x, %w, %v, %x) : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<8x8xf32>, tensor<8x8xf32>)
  return %r#0, %r#1 : tensor<8x8xf32>, tensor<8x8xf32>
}
