//===- DSV3Ops.cpp - dsv3 op verifiers ------------------------------------===//
//
// Each verifier checks every shape and attribute relation its op depends on,
// with a message that names the operand and gives the expected and the actual
// value. Dynamic dimensions ('?') match anything: they are checked at run time
// by the runtime, which knows the real sizes.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::dsv3;

#define GET_OP_CLASSES
#include "dsv3/Dialect/DSV3/IR/DSV3Ops.cpp.inc"

namespace {

/// FP8 block scales cover 128x128 tiles of the weight (spec §7.2).
constexpr int64_t kFp8BlockSize = 128;

std::string formatShape(ArrayRef<int64_t> shape) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "[";
  llvm::interleaveComma(shape, os, [&](int64_t d) {
    if (ShapedType::isDynamic(d))
      os << "?";
    else
      os << d;
  });
  os << "]";
  return text;
}

bool dimsCompatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

bool shapeCompatible(ArrayRef<int64_t> actual, ArrayRef<int64_t> expected) {
  if (actual.size() != expected.size())
    return false;
  for (auto [a, e] : llvm::zip_equal(actual, expected))
    if (!dimsCompatible(a, e))
      return false;
  return true;
}

int64_t ceilDivOrDynamic(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) ? ShapedType::kDynamic : (a + b - 1) / b;
}

ArrayRef<int64_t> shapeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}

/// Emits "<what> must be <formula> = [..], got [..]" unless `value` has the
/// expected shape.
LogicalResult expectShape(Operation *op, Value value, StringRef what,
                          StringRef formula, ArrayRef<int64_t> expected) {
  ArrayRef<int64_t> actual = shapeOf(value);
  if (shapeCompatible(actual, expected))
    return success();
  return op->emitOpError() << what << " must be " << formula << " = "
                           << formatShape(expected) << ", got "
                           << formatShape(actual);
}

LogicalResult expectPositive(Operation *op, StringRef name, int64_t value) {
  if (value > 0)
    return success();
  return op->emitOpError() << "attribute '" << name
                           << "' must be positive, got " << value;
}

LogicalResult expectSameType(Operation *op, Value result, Value like,
                             StringRef what) {
  if (result.getType() == like.getType())
    return success();
  return op->emitOpError() << what << " type " << result.getType()
                           << " must equal " << like.getType();
}

/// Checks the block scale of a (possibly expert-stacked) weight: required,
/// f32 [.., ceil(rows/128), ceil(cols/128)] for an FP8 weight, absent
/// otherwise.
LogicalResult verifyBlockScale(Operation *op, Value weight, Value scale,
                               StringRef name) {
  auto weightType = cast<RankedTensorType>(weight.getType());
  bool isFp8 = isa<Float8E4M3FNType>(weightType.getElementType());
  if (!isFp8) {
    if (scale)
      return op->emitOpError()
             << name << ": a block scale is only valid with an f8E4M3FN "
             << "weight, not " << weightType.getElementType();
    return success();
  }
  if (!scale)
    return op->emitOpError() << name
                             << ": an f8E4M3FN weight needs its block scale";
  ArrayRef<int64_t> shape = weightType.getShape();
  SmallVector<int64_t> expected(shape.drop_back(2));
  expected.push_back(ceilDivOrDynamic(shape[shape.size() - 2], kFp8BlockSize));
  expected.push_back(ceilDivOrDynamic(shape.back(), kFp8BlockSize));
  std::string what = (name + " scale").str();
  return expectShape(op, scale, what, "[ceil(rows/128), ceil(cols/128)]",
                     expected);
}

LogicalResult expectRank(Operation *op, Value value, StringRef what,
                         int64_t rank, StringRef layout) {
  int64_t actual = cast<RankedTensorType>(value.getType()).getRank();
  if (actual == rank)
    return success();
  return op->emitOpError() << what << " must be rank " << rank << " "
                           << layout << ", got rank " << actual;
}

} // namespace

//===----------------------------------------------------------------------===//
// EmbeddingOp
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  if (failed(expectRank(*this, getTable(), "table", 2, "[vocab, hidden]")))
    return failure();
  SmallVector<int64_t> expected(shapeOf(getTokens()));
  expected.push_back(shapeOf(getTable())[1]);
  return expectShape(*this, getResult(), "result", "tokens shape + [hidden]",
                     expected);
}

//===----------------------------------------------------------------------===//
// RmsNormOp
//===----------------------------------------------------------------------===//

LogicalResult RmsNormOp::verify() {
  if (!(getEps().convertToDouble() > 0.0))
    return emitOpError() << "eps must be positive, got "
                         << getEps().convertToDouble();
  ArrayRef<int64_t> inputShape = shapeOf(getInput());
  if (inputShape.empty())
    return emitOpError() << "input must have at least one dimension";
  if (failed(expectShape(*this, getWeight(), "weight",
                         "[input's last dimension]", {inputShape.back()})))
    return failure();
  return expectSameType(*this, getResult(), getInput(), "result");
}

//===----------------------------------------------------------------------===//
// LinearOp
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::verify() {
  if (failed(expectRank(*this, getWeight(), "weight", 2, "[out, in]")))
    return failure();
  ArrayRef<int64_t> inputShape = shapeOf(getInput());
  ArrayRef<int64_t> weightShape = shapeOf(getWeight());
  if (inputShape.empty())
    return emitOpError() << "input must have at least one dimension";
  if (!dimsCompatible(inputShape.back(), weightShape[1]))
    return emitOpError() << "input's last dimension (" << inputShape.back()
                         << ") must equal the weight's in-dimension ("
                         << weightShape[1] << ")";
  SmallVector<int64_t> expected(inputShape.drop_back());
  expected.push_back(weightShape[0]);
  if (failed(expectShape(*this, getResult(), "result",
                         "input shape with the last dimension = out",
                         expected)))
    return failure();
  return verifyBlockScale(*this, getWeight(), getScale(), "weight");
}

//===----------------------------------------------------------------------===//
// RopeOp
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::verify() {
  ArrayRef<int64_t> shape = shapeOf(getInput());
  if (shape.size() != 3 && shape.size() != 4)
    return emitOpError() << "input must be rank 3 [batch, seq, dim] or rank 4 "
                            "[batch, seq, heads, dim], got rank "
                         << shape.size();
  int64_t dim = shape.back();
  if (!ShapedType::isDynamic(dim) && dim % 2 != 0)
    return emitOpError()
           << "rotary dimension must be even (interleaved pairs), got " << dim;
  if (failed(expectShape(*this, getPositions(), "positions", "[batch, seq]",
                         {shape[0], shape[1]})))
    return failure();
  return expectSameType(*this, getResult(), getInput(), "result");
}

//===----------------------------------------------------------------------===//
// SwigluMlpOp
//===----------------------------------------------------------------------===//

LogicalResult SwigluMlpOp::verify() {
  ArrayRef<int64_t> inputShape = shapeOf(getInput());
  if (inputShape.empty())
    return emitOpError() << "input must have at least one dimension";
  if (failed(expectRank(*this, getGate(), "gate", 2, "[inter, hidden]")))
    return failure();
  int64_t hidden = inputShape.back();
  int64_t inter = shapeOf(getGate())[0];
  if (failed(expectShape(*this, getGate(), "gate", "[inter, hidden]",
                         {inter, hidden})) ||
      failed(expectShape(*this, getUp(), "up", "[inter, hidden]",
                         {inter, hidden})) ||
      failed(expectShape(*this, getDown(), "down", "[hidden, inter]",
                         {hidden, inter})))
    return failure();
  if (failed(verifyBlockScale(*this, getGate(), getGateScale(), "gate")) ||
      failed(verifyBlockScale(*this, getUp(), getUpScale(), "up")) ||
      failed(verifyBlockScale(*this, getDown(), getDownScale(), "down")))
    return failure();
  return expectSameType(*this, getResult(), getInput(), "result");
}

//===----------------------------------------------------------------------===//
// MlaOp
//===----------------------------------------------------------------------===//

int64_t MlaOp::getLatentCacheWidth() {
  return static_cast<int64_t>(getKvLoraRank() + getQkRopeHeadDim());
}

int64_t MlaOp::getExpandedCacheWidth() {
  return static_cast<int64_t>(
      getHeads() * (getQkNopeHeadDim() + getQkRopeHeadDim() + getVHeadDim()));
}

int64_t mlir::dsv3::packedFp8CacheTile(int64_t codes) {
  return codes % 128 == 0 ? 128 : codes;
}

int64_t mlir::dsv3::packedFp8CacheWidth(int64_t codes, int64_t bf16Values) {
  return codes + 4 * (codes / packedFp8CacheTile(codes)) + 2 * bf16Values;
}

int64_t MlaOp::getPackedFp8LatentCacheWidth() {
  return packedFp8CacheWidth(static_cast<int64_t>(getKvLoraRank()),
                        static_cast<int64_t>(getQkRopeHeadDim()));
}

int64_t MlaOp::getPackedFp8ExpandedCacheWidth() {
  return packedFp8CacheWidth(getExpandedCacheWidth(), 0);
}

int64_t MlaOp::getPackedFp8CacheTile() {
  return packedFp8CacheTile(hasLatentCache()
                           ? static_cast<int64_t>(getKvLoraRank())
                           : getExpandedCacheWidth());
}

bool MlaOp::hasPackedFp8Cache() {
  return cast<RankedTensorType>(getCache().getType())
      .getElementType()
      .isInteger(8);
}

bool MlaOp::hasLatentCache() {
  // A dynamic width is taken as latent (the verifier cannot tell).
  const int64_t width = shapeOf(getCache()).back();
  if (hasPackedFp8Cache())
    return width != getPackedFp8ExpandedCacheWidth();
  return width == getLatentCacheWidth();
}

LogicalResult MlaOp::verify() {
  Operation *op = *this;
  const int64_t heads = getHeads();
  const int64_t kvRank = getKvLoraRank();
  const int64_t nope = getQkNopeHeadDim();
  const int64_t rope = getQkRopeHeadDim();
  const int64_t vDim = getVHeadDim();
  for (auto [name, value] :
       {std::pair<StringRef, int64_t>{"heads", heads},
        {"kv_lora_rank", kvRank},
        {"qk_nope_head_dim", nope},
        {"qk_rope_head_dim", rope},
        {"v_head_dim", vDim}})
    if (failed(expectPositive(op, name, value)))
      return failure();
  if (rope % 2 != 0)
    return emitOpError() << "qk_rope_head_dim must be even (interleaved RoPE "
                            "pairs), got "
                         << rope;
  if (!(getSoftmaxScale().convertToDouble() > 0.0))
    return emitOpError() << "softmax_scale must be positive, got "
                         << getSoftmaxScale().convertToDouble();
  if (!(getEps().convertToDouble() > 0.0))
    return emitOpError() << "eps must be positive, got "
                         << getEps().convertToDouble();

  if (failed(expectRank(op, getHidden(), "hidden", 3, "[batch, seq, hidden]")))
    return failure();
  ArrayRef<int64_t> hiddenShape = shapeOf(getHidden());
  const int64_t batch = hiddenShape[0], seq = hiddenShape[1],
                dim = hiddenShape[2];
  if (failed(expectShape(op, getPositions(), "positions", "[batch, seq]",
                         {batch, seq})))
    return failure();

  // The query comes either through the low-rank pair q_a -> q_norm -> q_b or
  // through one plain projection; q_lora_rank says which.
  const int64_t qHeadRows = heads * (nope + rope);
  std::optional<uint64_t> qRank = getQLoraRank();
  const bool fusedDown = static_cast<bool>(getWqKvA());
  if (fusedDown && (getWqA() || getWkvA()))
    return emitOpError() << "q_kv_a replaces q_a and kv_a; give it alone";
  if (!fusedDown && !getWkvA())
    return emitOpError() << "needs kv_a (or q_kv_a, the fused q_a and kv_a)";
  if (getWqKvAScale() && !fusedDown)
    return emitOpError() << "q_kv_a_scale given without q_kv_a";
  if (getWkvAScale() && !getWkvA())
    return emitOpError() << "kv_a_scale given without kv_a";
  bool lowRankQuery =
      (getWqA() || fusedDown) && getQNorm() && getWqB() && !getWq();
  bool plainQuery = getWq() && !getWqA() && !getQNorm() && !getWqB() &&
                    !fusedDown;
  if (!(lowRankQuery && qRank) && !(plainQuery && !qRank))
    return emitOpError() << "needs either q_a, q_norm and q_b with "
                            "q_lora_rank, or q alone without q_lora_rank";
  if (getWqAScale() && !getWqA())
    return emitOpError() << "q_a_scale given without q_a";
  if (getWqBScale() && !getWqB())
    return emitOpError() << "q_b_scale given without q_b";
  if (getWqScale() && !getWq())
    return emitOpError() << "q_scale given without q";
  if (lowRankQuery) {
    const int64_t q = static_cast<int64_t>(*qRank);
    if (failed(expectPositive(op, "q_lora_rank", q)) ||
        failed(expectShape(op, getQNorm(), "q_norm weight", "[q_lora_rank]",
                           {q})) ||
        failed(expectShape(op, getWqB(), "q_b weight",
                           "[heads * (qk_nope_head_dim + qk_rope_head_dim), "
                           "q_lora_rank]",
                           {qHeadRows, q})) ||
        failed(verifyBlockScale(op, getWqB(), getWqBScale(), "q_b")))
      return failure();
    if (fusedDown) {
      if (failed(expectShape(op, getWqKvA(), "q_kv_a weight",
                             "[q_lora_rank + kv_lora_rank + "
                             "qk_rope_head_dim, hidden]",
                             {q + kvRank + rope, dim})) ||
          failed(verifyBlockScale(op, getWqKvA(), getWqKvAScale(), "q_kv_a")))
        return failure();
      if (isa<Float8E4M3FNType>(
              cast<RankedTensorType>(getWqKvA().getType()).getElementType()) &&
          q % kFp8BlockSize != 0)
        return emitOpError() << "an FP8 q_kv_a needs q_lora_rank to be a "
                                "multiple of 128 (its scale blocks would "
                                "straddle q_a and kv_a), got "
                             << q;
    } else if (failed(expectShape(op, getWqA(), "q_a weight",
                                  "[q_lora_rank, hidden]", {q, dim})) ||
               failed(verifyBlockScale(op, getWqA(), getWqAScale(), "q_a"))) {
      return failure();
    }
  } else if (failed(expectShape(
                 op, getWq(), "q weight",
                 "[heads * (qk_nope_head_dim + qk_rope_head_dim), hidden]",
                 {qHeadRows, dim})) ||
             failed(verifyBlockScale(op, getWq(), getWqScale(), "q"))) {
    return failure();
  }

  if (getWkvA() &&
      (failed(expectShape(op, getWkvA(), "kv_a weight",
                          "[kv_lora_rank + qk_rope_head_dim, hidden]",
                          {kvRank + rope, dim})) ||
       failed(verifyBlockScale(op, getWkvA(), getWkvAScale(), "kv_a"))))
    return failure();
  if (failed(expectShape(op, getKvNorm(), "kv_norm weight", "[kv_lora_rank]",
                         {kvRank})) ||
      failed(expectShape(op, getWkvB(), "kv_b weight",
                         "[heads * (qk_nope_head_dim + v_head_dim), "
                         "kv_lora_rank]",
                         {heads * (nope + vDim), kvRank})) ||
      failed(expectShape(op, getWo(), "o weight", "[hidden, heads * v_head_dim]",
                         {dim, heads * vDim})) ||
      failed(verifyBlockScale(op, getWkvB(), getWkvBScale(), "kv_b")) ||
      failed(verifyBlockScale(op, getWo(), getWoScale(), "o")))
    return failure();

  if (failed(expectRank(op, getCache(), "cache", 3,
                        "[batch, max_seq_len, width]")))
    return failure();
  ArrayRef<int64_t> cacheShape = shapeOf(getCache());
  if (!dimsCompatible(cacheShape[0], batch))
    return emitOpError() << "cache batch (" << cacheShape[0]
                         << ") must equal the hidden batch (" << batch << ")";
  int64_t width = cacheShape[2];
  if (hasPackedFp8Cache()) {
    if (!ShapedType::isDynamic(width) &&
        width != getPackedFp8LatentCacheWidth() &&
        width != getPackedFp8ExpandedCacheWidth())
      return emitOpError()
             << "an i8 cache holds a packed FP8 layout: width must be "
                "kv_lora_rank + 4 * "
             << kvRank / packedFp8CacheTile(kvRank)
             << " scale bytes + 2 * qk_rope_head_dim = "
             << getPackedFp8LatentCacheWidth()
             << " bytes (latent) or the expanded width + 4 * "
             << getExpandedCacheWidth() / packedFp8CacheTile(getExpandedCacheWidth())
             << " scale bytes = " << getPackedFp8ExpandedCacheWidth()
             << " bytes (expanded), got " << width;
    // The kernels read the packed latent rows 16 codes at a time: a chunk
    // must not straddle the latent's end or a scale tile.
    if (hasLatentCache() && kvRank % 16 != 0)
      return emitOpError() << "a packed FP8 latent cache needs kv_lora_rank "
                              "to be a multiple of 16, got "
                           << kvRank;
  } else if (!ShapedType::isDynamic(width) && width != getLatentCacheWidth() &&
      width != getExpandedCacheWidth())
    return emitOpError()
           << "cache width must be kv_lora_rank + qk_rope_head_dim = "
           << getLatentCacheWidth()
           << " (latent) or heads * (qk_nope_head_dim + qk_rope_head_dim + "
              "v_head_dim) = "
           << getExpandedCacheWidth() << " (expanded), got " << width;
  if (std::optional<uint64_t> from = getExpandFrom()) {
    if (failed(expectPositive(op, "expand_from", static_cast<int64_t>(*from))))
      return failure();
    if (!hasLatentCache())
      return emitOpError() << "expand_from applies to the latent cache "
                              "layout only";
  }
  if (failed(expectSameType(op, getResult(), getHidden(), "result")) ||
      failed(expectSameType(op, getUpdatedCache(), getCache(),
                            "updated cache")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// MoeOp
//===----------------------------------------------------------------------===//

/// The routing attributes of dsv3.moe and dsv3.moe_route, and the router
/// weight and bias against the hidden size `dim`.
template <typename OpTy>
static LogicalResult verifyRouting(OpTy op, int64_t dim) {
  const int64_t experts = op.getExperts();
  const int64_t topK = op.getTopK();
  const int64_t nGroup = op.getNGroup();
  const int64_t topkGroup = op.getTopkGroup();
  for (auto [name, value] : {std::pair<StringRef, int64_t>{"experts", experts},
                             {"top_k", topK},
                             {"n_group", nGroup},
                             {"topk_group", topkGroup}})
    if (failed(expectPositive(op, name, value)))
      return failure();
  if (topK > experts)
    return op.emitOpError() << "top_k (" << topK
                            << ") must not exceed experts (" << experts << ")";
  if (topkGroup > nGroup)
    return op.emitOpError() << "topk_group (" << topkGroup
                            << ") must not exceed n_group (" << nGroup << ")";
  if (experts % nGroup != 0)
    return op.emitOpError() << "n_group (" << nGroup
                            << ") must divide experts (" << experts << ")";
  const int64_t selectable = topkGroup * (experts / nGroup);
  if (topK > selectable)
    return op.emitOpError() << "top_k (" << topK
                            << ") must not exceed topk_group * (experts / "
                               "n_group) = "
                            << selectable;
  if (!(op.getRoutedScalingFactor().convertToDouble() > 0.0))
    return op.emitOpError() << "routed_scaling_factor must be positive, got "
                            << op.getRoutedScalingFactor().convertToDouble();
  if (failed(expectShape(op, op.getRouter(), "router weight",
                         "[experts, hidden]", {experts, dim})))
    return failure();
  if (op.getBias() && failed(expectShape(op, op.getBias(), "selection bias",
                                         "[experts]", {experts})))
    return failure();
  return success();
}

LogicalResult MoeOp::verify() {
  Operation *op = *this;
  const int64_t experts = getExperts();
  ArrayRef<int64_t> inputShape = shapeOf(getInput());
  if (inputShape.empty())
    return emitOpError() << "input must have at least one dimension";
  const int64_t dim = inputShape.back();
  if (failed(verifyRouting(*this, dim)))
    return failure();

  if (failed(expectRank(op, getGate(), "expert gate", 3,
                        "[experts, inter, hidden]")))
    return failure();
  const int64_t inter = shapeOf(getGate())[1];
  if (failed(expectShape(op, getGate(), "expert gate",
                         "[experts, inter, hidden]", {experts, inter, dim})) ||
      failed(expectShape(op, getUp(), "expert up", "[experts, inter, hidden]",
                         {experts, inter, dim})) ||
      failed(expectShape(op, getDown(), "expert down",
                         "[experts, hidden, inter]", {experts, dim, inter})) ||
      failed(verifyBlockScale(op, getGate(), getGateScale(), "expert gate")) ||
      failed(verifyBlockScale(op, getUp(), getUpScale(), "expert up")) ||
      failed(verifyBlockScale(op, getDown(), getDownScale(), "expert down")))
    return failure();

  // Shared experts: one SwiGLU MLP whose width is n_shared * inter.
  bool anyShared = getSharedGate() || getSharedUp() || getSharedDown();
  bool allShared = getSharedGate() && getSharedUp() && getSharedDown();
  if (anyShared && !allShared)
    return emitOpError()
           << "shared experts need all of gate, up and down, or none";
  if (!anyShared && (getSharedGateScale() || getSharedUpScale() ||
                     getSharedDownScale()))
    return emitOpError() << "shared expert scales given without shared experts";
  if (allShared) {
    if (failed(expectRank(op, getSharedGate(), "shared gate", 2,
                          "[shared_inter, hidden]")))
      return failure();
    const int64_t sharedInter = shapeOf(getSharedGate())[0];
    if (failed(expectShape(op, getSharedGate(), "shared gate",
                           "[shared_inter, hidden]", {sharedInter, dim})) ||
        failed(expectShape(op, getSharedUp(), "shared up",
                           "[shared_inter, hidden]", {sharedInter, dim})) ||
        failed(expectShape(op, getSharedDown(), "shared down",
                           "[hidden, shared_inter]", {dim, sharedInter})) ||
        failed(verifyBlockScale(op, getSharedGate(), getSharedGateScale(),
                                "shared gate")) ||
        failed(verifyBlockScale(op, getSharedUp(), getSharedUpScale(),
                                "shared up")) ||
        failed(verifyBlockScale(op, getSharedDown(), getSharedDownScale(),
                                "shared down")))
      return failure();
  }
  return expectSameType(op, getResult(), getInput(), "result");
}

//===----------------------------------------------------------------------===//
// Fused MoE ops
//===----------------------------------------------------------------------===//

namespace {

/// Product of two dims, dynamic if either is.
int64_t mulOrDynamic(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b)
             ? ShapedType::kDynamic
             : a * b;
}

/// `order` [P] and `offsets` [experts + 1] of a dispatch.
LogicalResult verifyDispatchOperands(Operation *op, Value order,
                                     Value offsets, int64_t experts) {
  if (failed(expectRank(op, order, "order", 1, "[pairs]")))
    return failure();
  return expectShape(op, offsets, "offsets", "[experts + 1]", {experts + 1});
}

/// Shared expert weights folded in as slots of the experts' width `inter`:
/// `rows` must be a multiple of it. Returns the number of slots.
FailureOr<int64_t> sharedSlots(Operation *op, int64_t rows, int64_t inter) {
  if (ShapedType::isDynamic(rows) || ShapedType::isDynamic(inter) ||
      inter <= 0 || rows % inter != 0) {
    op->emitOpError() << "shared expert width (" << rows
                      << ") must be a multiple of the expert width (" << inter
                      << ")";
    return failure();
  }
  return rows / inter;
}

} // namespace

LogicalResult MoeRouteOp::verify() {
  Operation *op = *this;
  if (failed(expectRank(op, getInput(), "input", 2, "[tokens, hidden]")))
    return failure();
  ArrayRef<int64_t> in = shapeOf(getInput());
  if (failed(verifyRouting(*this, in[1])))
    return failure();
  const int64_t topK = getTopK();
  if (failed(expectShape(op, getIndices(), "indices", "[tokens, top_k]",
                         {in[0], topK})) ||
      failed(expectShape(op, getWeights(), "weights", "[tokens, top_k]",
                         {in[0], topK})))
    return failure();
  return success();
}

LogicalResult MoeDispatchOp::verify() {
  Operation *op = *this;
  if (failed(expectPositive(op, "experts", getExperts())) ||
      failed(expectRank(op, getIndices(), "indices", 2, "[tokens, top_k]")))
    return failure();
  ArrayRef<int64_t> idx = shapeOf(getIndices());
  if (failed(expectShape(op, getOrder(), "order", "[tokens * top_k]",
                         {mulOrDynamic(idx[0], idx[1])})))
    return failure();
  return expectShape(op, getOffsets(), "offsets", "[experts + 1]",
                     {static_cast<int64_t>(getExperts()) + 1});
}

LogicalResult MoeGateUpOp::verify() {
  Operation *op = *this;
  if (failed(expectPositive(op, "top_k", getTopK())) ||
      failed(expectRank(op, getInput(), "input", 2, "[tokens, hidden]")) ||
      failed(expectRank(op, getGate(), "expert gate", 3,
                        "[experts, inter, hidden]")))
    return failure();
  ArrayRef<int64_t> gate = shapeOf(getGate());
  const int64_t experts = gate[0], inter = gate[1];
  const int64_t dim = shapeOf(getInput())[1];
  if (failed(verifyDispatchOperands(op, getOrder(), getOffsets(), experts)) ||
      failed(expectShape(op, getGate(), "expert gate",
                         "[experts, inter, hidden]", {experts, inter, dim})) ||
      failed(expectShape(op, getUp(), "expert up", "[experts, inter, hidden]",
                         {experts, inter, dim})) ||
      failed(verifyBlockScale(op, getGate(), getGateScale(), "expert gate")) ||
      failed(verifyBlockScale(op, getUp(), getUpScale(), "expert up")))
    return failure();
  if (static_cast<bool>(getSharedGate()) != static_cast<bool>(getSharedUp()))
    return emitOpError() << "shared experts need both gate and up, or neither";
  if (getSharedGate()) {
    if (failed(expectRank(op, getSharedGate(), "shared gate", 2,
                          "[shared_inter, hidden]")))
      return failure();
    const int64_t rows = shapeOf(getSharedGate())[0];
    if (failed(expectShape(op, getSharedGate(), "shared gate",
                           "[shared_inter, hidden]", {rows, dim})) ||
        failed(expectShape(op, getSharedUp(), "shared up",
                           "[shared_inter, hidden]", {rows, dim})) ||
        failed(verifyBlockScale(op, getSharedGate(), getSharedGateScale(),
                                "shared gate")) ||
        failed(verifyBlockScale(op, getSharedUp(), getSharedUpScale(),
                                "shared up")) ||
        failed(sharedSlots(op, rows, inter)))
      return failure();
  } else if (getSharedGateScale() || getSharedUpScale()) {
    return emitOpError() << "shared expert scales given without shared experts";
  }
  return expectShape(op, getResult(), "result",
                     "[tokens * top_k + tokens * shared_slots, inter]",
                     {ShapedType::kDynamic, inter});
}

LogicalResult MoeDownCombineOp::verify() {
  Operation *op = *this;
  if (failed(expectPositive(op, "top_k", getTopK())) ||
      failed(expectRank(op, getActivations(), "activations", 2,
                        "[rows, inter]")) ||
      failed(expectRank(op, getDown(), "expert down", 3,
                        "[experts, hidden, inter]")) ||
      failed(expectRank(op, getWeights(), "weights", 2, "[tokens, top_k]")))
    return failure();
  ArrayRef<int64_t> down = shapeOf(getDown());
  const int64_t experts = down[0], dim = down[1], inter = down[2];
  const int64_t tokens = shapeOf(getWeights())[0];
  if (failed(verifyDispatchOperands(op, getOrder(), getOffsets(), experts)) ||
      failed(expectShape(op, getActivations(), "activations",
                         "[rows, inter]", {ShapedType::kDynamic, inter})) ||
      failed(expectShape(op, getWeights(), "weights", "[tokens, top_k]",
                         {tokens, static_cast<int64_t>(getTopK())})) ||
      failed(verifyBlockScale(op, getDown(), getDownScale(), "expert down")))
    return failure();
  if (getSharedDown()) {
    if (failed(expectRank(op, getSharedDown(), "shared down", 2,
                          "[hidden, shared_inter]")))
      return failure();
    const int64_t cols = shapeOf(getSharedDown())[1];
    if (failed(expectShape(op, getSharedDown(), "shared down",
                           "[hidden, shared_inter]", {dim, cols})) ||
        failed(verifyBlockScale(op, getSharedDown(), getSharedDownScale(),
                                "shared down")) ||
        failed(sharedSlots(op, cols, inter)))
      return failure();
  } else if (getSharedDownScale()) {
    return emitOpError() << "shared expert scales given without shared experts";
  }
  return expectShape(op, getResult(), "result", "[tokens, hidden]",
                     {tokens, dim});
}
