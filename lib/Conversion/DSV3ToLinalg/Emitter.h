//===- Emitter.h - Builders of the dsv3 -> linalg lowering -----*- C++ -*-===//
//
// Private to lib/Conversion/DSV3ToLinalg.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_CONVERSION_DSV3TOLINALG_EMITTER_H
#define DSV3_LIB_CONVERSION_DSV3TOLINALG_EMITTER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir {
namespace dsv3 {
namespace lowering {

using utils::IteratorType;

/// Whether GEMMs become tensor-core tiles (bf16 inputs, f32 accumulation;
/// WarpMma.h) -- convert-dsv3-to-linalg{tensor-cores} -- and the tiles' rows
/// (mma-rows): 16, one warp's mma.sync, or 64, one warpgroup's wgmma.
struct TensorCoreTiles {
  bool enabled = false;
  int64_t rows = 16;
  explicit operator bool() const { return enabled; }
};

/// What the pass options choose for the kernels the patterns emit.
struct KernelOptions {
  TensorCoreTiles tensorCores = {};
  /// Token rows a row-dot kernel computes per pass over a weight tile
  /// (emitDotBlock in WeightStreams.cpp): 4 on the CPU, where the 32
  /// AVX-512 registers hold a 4 x 4 block of accumulators; 1 keeps the
  /// one-row loop (the GPU's CUDA-core kernels, where 16 accumulators of 16
  /// lanes would not fit a thread's registers).
  int64_t tokenRowBlock = 1;
};

/// Bundles the rewriter and location so the lowering code reads like the
/// math it implements.
struct Emitter {
  PatternRewriter &b;
  Location loc;
  /// emitLinear with bf16 weights as tensor-core tiles.
  TensorCoreTiles tensorCores = {};
  /// KernelOptions::tokenRowBlock.
  int64_t tokenRowBlock = 1;

  Type f32() { return b.getF32Type(); }
  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value f32Const(double v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
  }

  SmallVector<OpFoldResult> sizesOf(Value v) {
    return tensor::getMixedSizes(b, loc, v);
  }
  OpFoldResult dim(Value v, int64_t d) { return sizesOf(v)[d]; }

  Value empty(ArrayRef<OpFoldResult> sizes, Type elementType = nullptr) {
    return tensor::EmptyOp::create(b, loc, sizes,
                                   elementType ? elementType : f32());
  }
  Value filled(ArrayRef<OpFoldResult> sizes, double value) {
    Value init = empty(sizes);
    return linalg::FillOp::create(b, loc, ValueRange{f32Const(value)},
                                  ValueRange{init})
        .getResult(0);
  }

  AffineMap map(unsigned numDims, ArrayRef<unsigned> dims) {
    SmallVector<AffineExpr> exprs;
    for (unsigned d : dims)
      exprs.push_back(b.getAffineDimExpr(d));
    return AffineMap::get(numDims, 0, exprs, b.getContext());
  }
  static SmallVector<unsigned> range(unsigned begin, unsigned end) {
    SmallVector<unsigned> r;
    for (unsigned i = begin; i < end; ++i)
      r.push_back(i);
    return r;
  }

  /// A linalg.generic with one f32 result.
  Value generic(ArrayRef<Value> inputs, Value init, ArrayRef<AffineMap> maps,
                ArrayRef<IteratorType> iterators,
                function_ref<void(OpBuilder &, Location, ValueRange)> body) {
    return linalg::GenericOp::create(b, loc, TypeRange{init.getType()}, inputs,
                                     ValueRange{init}, maps, iterators, body)
        .getResult(0);
  }

  Value sliceLast(Value v, int64_t offset, int64_t size) {
    auto type = cast<RankedTensorType>(v.getType());
    SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0));
    offsets.back() = b.getIndexAttr(offset);
    SmallVector<OpFoldResult> sizes = sizesOf(v);
    sizes.back() = b.getIndexAttr(size);
    SmallVector<OpFoldResult> strides(type.getRank(), b.getIndexAttr(1));
    SmallVector<int64_t> shape(type.getShape());
    shape.back() = size;
    return tensor::ExtractSliceOp::create(
        b, loc, RankedTensorType::get(shape, type.getElementType()), v, offsets,
        sizes, strides);
  }

  /// Splits the last dimension of `v` into [outer, inner].
  Value splitLast(Value v, int64_t outer, int64_t inner) {
    auto type = cast<RankedTensorType>(v.getType());
    int64_t rank = type.getRank();
    SmallVector<ReassociationIndices> reassoc;
    for (int64_t i = 0; i < rank - 1; ++i)
      reassoc.push_back({i});
    reassoc.push_back({rank - 1, rank});
    SmallVector<OpFoldResult> outShape = sizesOf(v);
    outShape.back() = b.getIndexAttr(outer);
    outShape.push_back(b.getIndexAttr(inner));
    SmallVector<int64_t> shape(type.getShape().drop_back());
    shape.append({outer, inner});
    return tensor::ExpandShapeOp::create(
        b, loc, RankedTensorType::get(shape, type.getElementType()), v, reassoc,
        outShape);
  }

  /// Merges the last two dimensions of `v`.
  Value mergeLast(Value v) {
    auto type = cast<RankedTensorType>(v.getType());
    int64_t rank = type.getRank();
    SmallVector<ReassociationIndices> reassoc;
    for (int64_t i = 0; i < rank - 2; ++i)
      reassoc.push_back({i});
    reassoc.push_back({rank - 2, rank - 1});
    SmallVector<int64_t> shape(type.getShape().drop_back(2));
    shape.push_back(type.getDimSize(rank - 2) * type.getDimSize(rank - 1));
    return tensor::CollapseShapeOp::create(
        b, loc, RankedTensorType::get(shape, type.getElementType()), v,
        reassoc);
  }

  Value toIndex(Value integer) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), integer);
  }
};

/// Builder-level helpers usable inside generic bodies (which get a plain
/// OpBuilder).
inline Value indexConst(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

/// [[0, .., rank-2], [rank-1]]: every leading (token) dim of a rank-`rank`
/// tensor into one, the last kept.
inline SmallVector<ReassociationIndices> tokenReassociation(int64_t rank) {
  SmallVector<ReassociationIndices> reassoc{{}};
  for (int64_t i = 0; i < rank - 1; ++i)
    reassoc[0].push_back(i);
  reassoc.push_back({rank - 1});
  return reassoc;
}

/// tensor[i] of a 1-D integer tensor, as an index.
inline Value extractIndex(OpBuilder &b, Location loc, Value tensor, Value i) {
  return arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      tensor::ExtractOp::create(b, loc, tensor, ValueRange{i}));
}

} // namespace lowering
} // namespace dsv3
} // namespace mlir

#endif // DSV3_LIB_CONVERSION_DSV3TOLINALG_EMITTER_H
