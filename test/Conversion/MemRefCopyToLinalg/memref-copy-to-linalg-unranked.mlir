// RUN: dsv3-opt %s --pass-pipeline="builtin.module(func.func(dsv3-memref-copy-to-linalg))" | FileCheck %s
// RUN: not dsv3-opt %s --pass-pipeline="builtin.module(func.func(dsv3-memref-copy-to-linalg{all=true}))" 2>&1 | FileCheck %s --check-prefix=ERR

/// An unranked copy has no linalg.copy form: by default it stays memref.copy
/// (the runtime's memrefCopy handles it); with all=true, whose point is that
/// no such call remains, it is an error naming the op, not a crash.
// CHECK-LABEL: func.func @unranked(
// CHECK-NEXT: memref.copy %{{.*}}, %{{.*}} : memref<*xf32> to memref<*xf32>
// CHECK-NOT: linalg.copy
// ERR: error: 'memref.copy' op copies an unranked memref, which dsv3-memref-copy-to-linalg{all=true} cannot turn into linalg.copy
func.func @unranked(%a: memref<*xf32>, %b: memref<*xf32>) {
  memref.copy %a, %b : memref<*xf32> to memref<*xf32>
  return
}
