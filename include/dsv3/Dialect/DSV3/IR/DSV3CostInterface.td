//===- DSV3CostInterface.td - What a dsv3 op costs ---------*- tablegen -*-===//
//
// Every dsv3 op says what one call of it costs, so that the cost report
// (lib/Analysis/CostReport.cpp) needs no knowledge of individual ops: adding
// an op means writing its formula next to the op (DSV3Cost.cpp), not
// extending a list of casts in the report.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_COST_INTERFACE
#define DSV3_COST_INTERFACE

include "mlir/IR/OpBase.td"

def DSV3_CostOpInterface : OpInterface<"CostOpInterface"> {
  let cppNamespace = "::mlir::dsv3";
  let description = [{
    The static cost of one call of the op for one sequence (batch 1): FLOPs
    (2 per multiply-add), weight bytes read, KV-cache bytes read, and
    KV-cache bytes the op stores per token. The caller describes the call as
    a `CostStep` (new tokens, attended (query, cache entry) pairs, cache
    entries read), so one formula serves prefill, decode and the head's
    last-position step alike. Ops whose cost the report neglects (RoPE,
    dispatch index arithmetic) return a zero `OpCost`.
  }];
  let methods = [
    InterfaceMethod<
      /*desc=*/[{
        The cost of one call of this op for `step`. `options` holds what the
        IR does not say (the KV-cache element size the report assumes).
      }],
      /*retTy=*/"::mlir::dsv3::OpCost",
      /*methodName=*/"getCost",
      /*args=*/(ins "const ::mlir::dsv3::CostStep &":$step,
                    "const ::mlir::dsv3::OpCostOptions &":$options)>,
  ];
}

#endif // DSV3_COST_INTERFACE
