// RUN: dsv3-opt %s --convert-dsv3-to-linalg | FileCheck %s
// RUN: dsv3-opt %s --dsv3-cpu-pipeline > /dev/null

/// rms_norm on bf16 activations (the verifier accepts them; the result has
/// the input's type): the squares, the mean and the scaling are f32, and the
/// result is rounded to bf16 once. It used to emit arith.addf on f32 and
/// bf16 operands, invalid IR.
// CHECK-LABEL: func.func @rms_norm_bf16
// CHECK: linalg.generic
// CHECK: ^bb0(%[[X:.*]]: bf16, %[[ACC:.*]]: f32):
// CHECK: %[[XF:.*]] = arith.extf %[[X]] : bf16 to f32
// CHECK: %[[SQ:.*]] = arith.mulf %[[XF]], %[[XF]] : f32
// CHECK: arith.addf %[[ACC]], %[[SQ]] : f32
// CHECK: linalg.generic
// CHECK: ^bb0(%{{.*}}: bf16, %{{.*}}: f32, %{{.*}}: bf16, %{{.*}}: bf16):
// CHECK: math.rsqrt
// CHECK: %[[OUT:.*]] = arith.truncf %{{.*}} : f32 to bf16
// CHECK: linalg.yield %[[OUT]] : bf16
// CHECK: -> tensor<3x64xbf16>
func.func @rms_norm_bf16(%x: tensor<3x64xbf16>, %w: tensor<64xbf16>) -> tensor<3x64xbf16> {
  %0 = dsv3.rms_norm %x, %w {eps = 1.0e-06 : f64} : (tensor<3x64xbf16>, tensor<64xbf16>) -> tensor<3x64xbf16>
  return %0 : tensor<3x64xbf16>
}
