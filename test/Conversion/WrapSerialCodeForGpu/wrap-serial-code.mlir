// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(func.func(dsv3-wrap-serial-code-for-gpu))" | FileCheck %s

// Serial glue that touches buffers goes into a one-iteration scf.parallel
// (a single-thread kernel once mapped); parallel loops, allocations and pure
// index arithmetic stay where they are; host control flow around parallel
// loops (a layer loop) is descended into.

// CHECK-LABEL: func.func @glue
// CHECK: memref.alloc
// CHECK: scf.parallel (%{{.*}}) = (%[[Z:.*]]) to (%[[O:.*]]) step (%[[O]])
// CHECK-NEXT: memref.store
// CHECK-NEXT: scf.reduce
// CHECK: scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step
// CHECK-NEXT: scf.for
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT: scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
// CHECK-NEXT: memref.load
func.func @glue(%x: memref<8xf32>, %n: index) -> memref<f32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0.0 : f32
  %sum = memref.alloc() : memref<f32>
  memref.store %zero, %sum[] : memref<f32>
  scf.for %i = %c0 to %c8 step %c1 {
    %v = memref.load %x[%i] : memref<8xf32>
    %s = memref.load %sum[] : memref<f32>
    %t = arith.addf %s, %v : f32
    memref.store %t, %sum[] : memref<f32>
  }
  scf.for %layer = %c0 to %n step %c1 {
    scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
      %v = memref.load %x[%i] : memref<8xf32>
      %w = arith.addf %v, %v : f32
      memref.store %w, %x[%i] : memref<8xf32>
      scf.reduce
    }
  }
  return %sum : memref<f32>
}

// -----

// A serial loop whose result the host needs (a count of active experts used
// as a loop bound) hands it over through a one-element buffer.

// CHECK-LABEL: func.func @count
// CHECK: %[[BUF:.*]] = memref.alloc() : memref<index>
// CHECK: scf.parallel
// CHECK: %[[N:.*]] = scf.for
// CHECK: memref.store %[[N]], %[[BUF]][]
// CHECK: %[[HOST:.*]] = memref.load %[[BUF]][]
// CHECK: memref.dealloc %[[BUF]]
// CHECK: scf.parallel (%{{.*}}) = (%{{.*}}) to (%[[HOST]])
func.func @count(%flags: memref<8xi1>, %out: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %one = arith.constant 1.0 : f32
  %n = scf.for %i = %c0 to %c8 step %c1 iter_args(%acc = %c0) -> (index) {
    %f = memref.load %flags[%i] : memref<8xi1>
    %inc = arith.select %f, %c1, %c0 : index
    %next = arith.addi %acc, %inc : index
    scf.yield %next : index
  }
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %one, %out[%i] : memref<8xf32>
    scf.reduce
  }
  return
}

// -----

// A serial op that returns a buffer cannot be moved into a kernel.

func.func @buffer_result(%x: memref<8xf32>, %y: memref<8xf32>, %c: i1) -> memref<8xf32> {
  %c0 = arith.constant 0 : index
  %zero = arith.constant 0.0 : f32
  // expected-error @+1 {{reads memory on the host and returns a non-scalar value; it cannot be moved into a GPU kernel}}
  %r = scf.if %c -> (memref<8xf32>) {
    memref.store %zero, %x[%c0] : memref<8xf32>
    scf.yield %x : memref<8xf32>
  } else {
    scf.yield %y : memref<8xf32>
  }
  return %r : memref<8xf32>
}
