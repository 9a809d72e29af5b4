//===- PackedFp8Cache.cpp - The FP8 latent cache's rows -------------------===//
//
// See PackedFp8Cache.h. The quantization follows FlashMLA's reference
// (tests/quant.py, V32_FP8Sparse): power-of-two tile scales, e4m3 codes
// rounded to nearest even, the rope key in bf16. Everything is integer and
// exact f32 arithmetic, so the numpy reference (python/dsv3/reference.py)
// reproduces every byte.
//
//===----------------------------------------------------------------------===//

#include "PackedFp8Cache.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir {
namespace dsv3 {
namespace lowering {

PackedFp8Rows packedFp8RowsOf(MlaOp op) {
  PackedFp8Rows p;
  p.tile = op.getPackedFp8CacheTile();
  if (op.hasLatentCache()) {
    p.latent = static_cast<int64_t>(op.getKvLoraRank());
    p.rope = static_cast<int64_t>(op.getQkRopeHeadDim());
  } else {
    // Expanded: every column of the per-head K, V row is a code.
    p.latent = op.getExpandedCacheWidth();
  }
  p.cols = p.latent + p.rope;
  return p;
}

namespace {

/// The largest finite e4m3fn value: a tile's amax maps to it.
constexpr double kE4M3Max = 448.0;
/// FlashMLA's floor on amax / 448 (an all-zero tile still gets a scale).
constexpr float kMinScale = 1e-4f;

struct Ints {
  OpBuilder &b;
  Location loc;
  Value c(int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
  }
  Value shr(Value x, int64_t n) { return arith::ShRUIOp::create(b, loc, x, c(n)); }
  Value shl(Value x, int64_t n) { return arith::ShLIOp::create(b, loc, x, c(n)); }
  Value bitAnd(Value x, int64_t m) { return arith::AndIOp::create(b, loc, x, c(m)); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value bits(Value f) {
    return arith::BitcastOp::create(b, loc, b.getI32Type(), f);
  }
  Value toF32(Value i) {
    return arith::BitcastOp::create(b, loc, b.getF32Type(), i);
  }
  Value toByte(Value i) {
    return arith::TruncIOp::create(b, loc, b.getI8Type(), i);
  }
  Value fromByte(Value byte) {
    return arith::ExtUIOp::create(b, loc, b.getI32Type(), byte);
  }
};

/// The e4m3fn code (in the low byte of an i32) of f32 `v`, |v| <= 448 (the
/// scale guarantees it), rounded to nearest even.
Value encodeE4M3(OpBuilder &b, Location loc, Value v) {
  Ints i{b, loc};
  Value bits = i.bits(v);
  Value sign = i.bitAnd(i.shr(bits, 24), 0x80);
  Value magnitude = i.bitAnd(bits, 0x7FFFFFFF);
  // Normal (|v| >= 2^-6): the 23-bit mantissa rounded to 3 bits, ties to
  // even (add 0x7FFFF plus the kept lowest bit, drop 20 bits), exponent
  // rebiased from 127 to 7; a carry moves into the exponent as it should.
  Value keptLsb = i.bitAnd(i.shr(magnitude, 20), 1);
  Value rounded =
      i.shr(i.add(i.add(magnitude, i.c(0x7FFFF)), keptLsb), 20);
  Value normal = arith::MinUIOp::create(
      b, loc, arith::SubIOp::create(b, loc, rounded, i.c(120 << 3)),
      i.c(0x7E));
  // Subnormal: code = round_even(|v| * 2^9) in [0, 8] (8 is 2^-6, the
  // smallest normal's code): adding 2^23 lets the f32 addition round it.
  Value shifted = arith::AddFOp::create(
      b, loc,
      arith::MulFOp::create(b, loc, i.toF32(magnitude),
                            arith::ConstantOp::create(
                                b, loc, b.getF32FloatAttr(512.0f))),
      arith::ConstantOp::create(b, loc, b.getF32FloatAttr(8388608.0f)));
  Value subnormal =
      arith::SubIOp::create(b, loc, i.bits(shifted), i.c(0x4B000000));
  Value isSubnormal = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::ult, magnitude, i.c(0x3C800000));
  return arith::OrIOp::create(
      b, loc, arith::SelectOp::create(b, loc, isSubnormal, subnormal, normal),
      sign);
}

/// Byte `k % bytesPerWord` (little-endian) of the i32 `word`, as an i8.
Value byteOfWord(OpBuilder &b, Location loc, Value word, Value k,
                 int64_t bytesPerWord) {
  Ints i{b, loc};
  Value shift = arith::IndexCastOp::create(
      b, loc, b.getI32Type(),
      arith::MulIOp::create(
          b, loc,
          arith::RemUIOp::create(b, loc, k, indexConst(b, loc, bytesPerWord)),
          indexConst(b, loc, 8)));
  return i.toByte(arith::ShRUIOp::create(b, loc, word, shift));
}

/// `cond ? thenValue : elseValue` of type `type`, each side built in its
/// own branch (the side not taken may index out of range).
Value branch(OpBuilder &b, Location loc, Type type, Value cond,
             function_ref<Value(OpBuilder &)> thenValue,
             function_ref<Value(OpBuilder &)> elseValue) {
  auto op = scf::IfOp::create(b, loc, TypeRange{type}, cond,
                              /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&op.getThenRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{thenValue(b)});
  b.setInsertionPointToStart(&op.getElseRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{elseValue(b)});
  return op.getResult(0);
}

Value below(OpBuilder &b, Location loc, Value index, int64_t bound) {
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, index,
                               indexConst(b, loc, bound));
}

Value offset(OpBuilder &b, Location loc, Value index, int64_t delta) {
  return arith::AddIOp::create(b, loc, index, indexConst(b, loc, delta));
}

/// scale[b, s, t] of every tile of entries [B, S, latent + rope]: the tile's
/// amax / 448, at least 1e-4, rounded up to a power of two.
Value emitTileScales(Emitter &e, Value entries, const PackedFp8Rows &p) {
  const int64_t tiles = p.latent / p.tile;
  Value grouped = e.splitLast(e.sliceLast(entries, 0, p.latent), tiles, p.tile);
  SmallVector<OpFoldResult> sizes = e.sizesOf(grouped);
  sizes.pop_back();
  Value amax = e.generic(
      {grouped}, e.filled(sizes, 0.0),
      {e.b.getMultiDimIdentityMap(4), e.map(4, {0, 1, 2})},
      {IteratorType::parallel, IteratorType::parallel, IteratorType::parallel,
       IteratorType::reduction},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value m = arith::MaximumFOp::create(
            b, loc, args[1], math::AbsFOp::create(b, loc, args[0]));
        linalg::YieldOp::create(b, loc, ValueRange{m});
      });
  return e.generic(
      {amax}, e.empty(sizes),
      {e.b.getMultiDimIdentityMap(3), e.b.getMultiDimIdentityMap(3)},
      SmallVector<IteratorType>(3, IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Ints i{b, loc};
        Value ratio = arith::DivFOp::create(
            b, loc, args[0],
            arith::ConstantOp::create(b, loc, b.getF32FloatAttr(kE4M3Max)));
        Value floored = arith::MaximumFOp::create(
            b, loc, ratio,
            arith::ConstantOp::create(b, loc, b.getF32FloatAttr(kMinScale)));
        // 2^ceil(log2(x)) of a positive normal x: its exponent, plus one
        // when any mantissa bit is set.
        Value bits = i.bits(floored);
        Value exponent = i.shr(bits, 23);
        Value inexact = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::ne, i.bitAnd(bits, 0x7FFFFF), i.c(0));
        Value up = arith::ExtUIOp::create(b, loc, b.getI32Type(), inexact);
        linalg::YieldOp::create(
            b, loc, ValueRange{i.toF32(i.shl(i.add(exponent, up), 23))});
      });
}

} // namespace

Value emitPackFp8Rows(Emitter &e, Value entries, const PackedFp8Rows &p) {
  Value scales = emitTileScales(e, entries, p); // [B, S, tiles]
  SmallVector<OpFoldResult> sizes = e.sizesOf(entries);
  sizes.back() = e.b.getIndexAttr(p.bytes());
  Type i8 = e.b.getI8Type();
  return e.generic(
      {}, e.empty(sizes, i8), {e.b.getMultiDimIdentityMap(3)},
      SmallVector<IteratorType>(3, IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange) {
        Value bi = linalg::IndexOp::create(b, loc, 0);
        Value si = linalg::IndexOp::create(b, loc, 1);
        Value j = linalg::IndexOp::create(b, loc, 2);
        auto scaleOf = [&](OpBuilder &bb, Value tile) -> Value {
          return tensor::ExtractOp::create(bb, loc, scales,
                                           ValueRange{bi, si, tile});
        };
        Value byte = branch(
            b, loc, i8, below(b, loc, j, p.scaleOffset()),
            [&](OpBuilder &bb) -> Value {
              // A code: x / scale is exact (a power of two).
              Value x =
                  tensor::ExtractOp::create(bb, loc, entries, ValueRange{bi, si, j});
              Value tile = arith::DivUIOp::create(bb, loc, j,
                                                  indexConst(bb, loc, p.tile));
              Value scaled =
                  arith::DivFOp::create(bb, loc, x, scaleOf(bb, tile));
              return Ints{bb, loc}.toByte(encodeE4M3(bb, loc, scaled));
            },
            [&](OpBuilder &bb) -> Value {
              return branch(
                  bb, loc, i8, below(bb, loc, j, p.ropeOffset()),
                  [&](OpBuilder &b2) -> Value {
                    // Byte k % 4 of scale k / 4, little-endian.
                    Value k = offset(b2, loc, j, -p.scaleOffset());
                    Value tile = arith::DivUIOp::create(
                        b2, loc, k, indexConst(b2, loc, 4));
                    return byteOfWord(b2, loc,
                                      Ints{b2, loc}.bits(scaleOf(b2, tile)), k,
                                      4);
                  },
                  [&](OpBuilder &b2) -> Value {
                    // Byte k % 2 of rope value k / 2 rounded to bf16.
                    Value k = offset(b2, loc, j, -p.ropeOffset());
                    Value r = offset(
                        b2, loc,
                        arith::DivUIOp::create(b2, loc, k,
                                               indexConst(b2, loc, 2)),
                        p.latent);
                    Value x = tensor::ExtractOp::create(b2, loc, entries,
                                                        ValueRange{bi, si, r});
                    Value half = arith::BitcastOp::create(
                        b2, loc, b2.getI16Type(),
                        arith::TruncFOp::create(b2, loc, b2.getBF16Type(), x));
                    Value wide =
                        arith::ExtUIOp::create(b2, loc, b2.getI32Type(), half);
                    return byteOfWord(b2, loc, wide, k, 2);
                  });
            });
        linalg::YieldOp::create(b, loc, ValueRange{byte});
      });
}

Value emitUnpackFp8Rows(Emitter &e, Value packed, const PackedFp8Rows &p) {
  SmallVector<OpFoldResult> sizes = e.sizesOf(packed);
  sizes.back() = e.b.getIndexAttr(p.latent + p.rope);
  return e.generic(
      {}, e.empty(sizes), {e.b.getMultiDimIdentityMap(3)},
      SmallVector<IteratorType>(3, IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange) {
        Value bi = linalg::IndexOp::create(b, loc, 0);
        Value ti = linalg::IndexOp::create(b, loc, 1);
        Value c = linalg::IndexOp::create(b, loc, 2);
        auto byteAt = [&](OpBuilder &bb, Value at) -> Value {
          return Ints{bb, loc}.fromByte(tensor::ExtractOp::create(
              bb, loc, packed, ValueRange{bi, ti, at}));
        };
        Value value = branch(
            b, loc, b.getF32Type(), below(b, loc, c, p.latent),
            [&](OpBuilder &bb) -> Value {
              Ints i{bb, loc};
              Value code = tensor::ExtractOp::create(bb, loc, packed,
                                                     ValueRange{bi, ti, c});
              auto one = VectorType::get({1}, bb.getI8Type());
              Value decoded = vector::ExtractOp::create(
                  bb, loc,
                  decodeFp8Vector(bb, loc,
                                  vector::BroadcastOp::create(bb, loc, one,
                                                              code)),
                  ArrayRef<int64_t>{0});
              Value first = offset(
                  bb, loc,
                  arith::MulIOp::create(
                      bb, loc,
                      arith::DivUIOp::create(bb, loc, c,
                                             indexConst(bb, loc, p.tile)),
                      indexConst(bb, loc, 4)),
                  p.scaleOffset());
              Value bits = byteAt(bb, first);
              for (int64_t k = 1; k < 4; ++k)
                bits = arith::OrIOp::create(
                    bb, loc, bits,
                    i.shl(byteAt(bb, offset(bb, loc, first, k)), 8 * k));
              return arith::MulFOp::create(bb, loc, decoded, i.toF32(bits));
            },
            [&](OpBuilder &bb) -> Value {
              Ints i{bb, loc};
              Value first = offset(
                  bb, loc,
                  arith::MulIOp::create(bb, loc, c, indexConst(bb, loc, 2)),
                  p.ropeOffset() - 2 * p.latent);
              Value half = arith::OrIOp::create(
                  bb, loc, byteAt(bb, first),
                  i.shl(byteAt(bb, offset(bb, loc, first, 1)), 8));
              // bf16 bits are the top half of the f32's.
              return i.toF32(i.shl(half, 16));
            });
        linalg::YieldOp::create(b, loc, ValueRange{value});
      });
}

} // namespace lowering
} // namespace dsv3
} // namespace mlir
