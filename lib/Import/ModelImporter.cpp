//===- ModelImporter.cpp - ModelConfig -> depth-independent dsv3 module ---===//
//
// The forward pass is emitted once per layer *kind*, not once per layer:
//
//   h = dsv3.embedding(embed, tokens)
//   scf.for l in [0, first_k_dense)           -- dense layers
//     h = block(h, attention[l], dense_ffn[l])
//   scf.for j in [0, moe_layers)              -- MoE layers
//     h = block(h, attention[first_k_dense + j], moe_ffn[j])
//   logits = lm_head(final_norm(h[:, last]))
//
// Every weight is a function argument stacked along a leading layer dimension
// ([layers, ...]); each loop iteration slices its layer's weights and cache.
// The IR for the 61-layer 671B config is therefore as large as for a 3-layer
// toy, and it is built in milliseconds.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Import/ModelImporter.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;
using namespace mlir::dsv3;

namespace {

/// Which stack a weight belongs to: that decides its leading dimension and
/// which loop slices it.
enum class Stack { None, Attention, Dense, Moe, Mtp };

/// One weight argument of the entry points.
struct WeightSpec {
  std::string role;   // e.g. "attn.wq_a", "moe.expert_gate.scale"
  std::string source; // HF tensor name pattern, e.g.
                      // "model.layers.{layer}.self_attn.q_a_proj.weight"
  Stack stack;
  RankedTensorType type; // including the stack dimensions
  /// Read by the MTP draft (roles "mtp.*"), not by the main model.
  bool mtp = false;
};

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

class Importer {
public:
  Importer(MLIRContext &ctx, const ::dsv3::ModelConfig &config,
           const ImportOptions &options)
      : ctx(ctx), cfg(config), opts(options), builder(&ctx),
        loc(UnknownLoc::get(&ctx)) {}

  ImportResult run();

private:
  // -- Weight catalogue -----------------------------------------------------
  void collectWeights();
  /// One decoder block's weights, stacked as `stack` says.
  void collectAttentionWeights(Stack stack);
  void collectDenseWeights(Stack stack);
  void collectMoeWeights(Stack stack);
  void addWeight(StringRef role, StringRef source, Stack stack,
                 ArrayRef<int64_t> shape, Type elementType);
  /// A projection: FP8 with a block scale in FP8 checkpoints, else float.
  void addProjection(StringRef role, StringRef source, Stack stack,
                     ArrayRef<int64_t> stackDims, int64_t rows, int64_t cols);
  SmallVector<int64_t> stackDims(Stack stack) const;

  // -- IR construction ------------------------------------------------------
  /// The main model: last-position logits, or (allPositions) every
  /// position's logits and normalised hidden state.
  func::FuncOp buildForward(ModuleOp module, bool allPositions);
  /// The MTP module (spec §6): (tokens, positions, previous hidden states,
  /// MTP cache) -> (last-position logits, its hidden state, MTP cache).
  func::FuncOp buildDraft(ModuleOp module);
  /// A public entry calling `callee` with `seqLen` tokens: its leading
  /// arguments are the inputs `inputNames`, then the main model's weights
  /// (or the MTP module's, with `mtp`).
  void buildEntry(ModuleOp module, func::FuncOp callee, StringRef name,
                  int64_t seqLen, ArrayRef<StringRef> inputNames,
                  ArrayRef<int64_t> resultDestinations, bool mtp);
  Value sliceLastPosition(Value hidden, Value tokens);
  /// The value of weight `role` for the current loop iteration: the argument
  /// itself for unstacked weights, else the slice at `index` of its stack.
  Value weight(StringRef role, Value index = nullptr);
  Value weightOrNull(StringRef role, Value index) {
    return weights.count(rolePrefix + role.str()) ? weight(role, index)
                                                    : Value();
  }
  Value sliceLeading(Value stacked, Value index);
  /// One decoder block; returns (new hidden, new cache).
  std::pair<Value, Value> buildBlock(Value hidden, Value positions, Value cache,
                                     Value attnIndex, Value ffnIndex,
                                     bool isMoe);
  Value buildMla(Value normed, Value positions, Value layerCache,
                 Value attnIndex, Value &updatedCache);
  Value buildDenseFfn(Value normed, Value index);
  Value buildMoe(Value normed, Value index);

  Type floatWeightType();
  int64_t cacheWidth() const;
  RankedTensorType cacheType();
  /// The MTP module's cache: one layer of the main cache's layout.
  RankedTensorType mtpCacheType();
  RankedTensorType hiddenType();

  MLIRContext &ctx;
  const ::dsv3::ModelConfig &cfg;
  ImportOptions opts;
  OpBuilder builder;
  Location loc;

  SmallVector<WeightSpec> specs;
  /// Role -> the forward function's block argument.
  llvm::StringMap<Value> weights;
  /// Prepended to the roles weights are added and looked up by: "mtp."
  /// while the MTP module's are.
  std::string rolePrefix;
  int64_t maxSeqLen = 0;
};

Type Importer::floatWeightType() {
  switch (opts.weightPrecision) {
  case WeightPrecision::F32:
    return builder.getF32Type();
  case WeightPrecision::BF16:
    return builder.getBF16Type();
  case WeightPrecision::F16:
    return builder.getF16Type();
  }
  llvm_unreachable("unknown weight precision");
}

SmallVector<int64_t> Importer::stackDims(Stack stack) const {
  switch (stack) {
  case Stack::None:
    return {};
  case Stack::Attention:
    return {cfg.numHiddenLayers};
  case Stack::Dense:
    return {cfg.numDenseLayers()};
  case Stack::Moe:
    return {cfg.numMoeLayers()};
  case Stack::Mtp:
    return {1};
  }
  llvm_unreachable("unknown stack");
}

void Importer::addWeight(StringRef role, StringRef source, Stack stack,
                         ArrayRef<int64_t> shape, Type elementType) {
  SmallVector<int64_t> full = stackDims(stack);
  full.append(shape.begin(), shape.end());
  specs.push_back({rolePrefix + role.str(), source.str(), stack,
                   RankedTensorType::get(full, elementType),
                   !rolePrefix.empty()});
}

void Importer::addProjection(StringRef role, StringRef source, Stack stack,
                             ArrayRef<int64_t> extraDims, int64_t rows,
                             int64_t cols) {
  SmallVector<int64_t> shape(extraDims);
  shape.append({rows, cols});
  if (!cfg.fp8) {
    addWeight(role, source, stack, shape, floatWeightType());
    return;
  }
  // The released checkpoint stores each projection as F8_E4M3 plus an f32
  // `weight_scale_inv` with one factor per 128x128 block (spec §7.2).
  addWeight(role, source, stack, shape, builder.getType<Float8E4M3FNType>());
  SmallVector<int64_t> scaleShape(extraDims);
  scaleShape.append({ceilDiv(rows, cfg.fp8->blockRows),
                     ceilDiv(cols, cfg.fp8->blockCols)});
  std::string scaleSource = source.str() + "_scale_inv";
  addWeight((role + ".scale").str(), scaleSource, stack, scaleShape,
            builder.getF32Type());
}

void Importer::collectWeights() {
  const int64_t d = cfg.hiddenSize, v = cfg.vocabSize;
  Type floatType = floatWeightType();

  addWeight("embed", "model.embed_tokens.weight", Stack::None, {v, d},
            floatType);
  addWeight("final_norm", "model.norm.weight", Stack::None, {d}, floatType);
  if (!cfg.tieWordEmbeddings)
    addWeight("lm_head", "lm_head.weight", Stack::None, {v, d}, floatType);
  collectAttentionWeights(Stack::Attention);
  if (cfg.numDenseLayers() > 0)
    collectDenseWeights(Stack::Dense);
  if (cfg.numMoeLayers() > 0)
    collectMoeWeights(Stack::Moe);
  if (!opts.mtp)
    return;

  // The MTP module (spec §6), layer num_hidden_layers of the checkpoint: its
  // own copies of the embedding and the head, the two input norms, eh_proj
  // (bf16 even in FP8 checkpoints), and one decoder block, a MoE block when
  // the model has experts (as in V3), stacked as one layer.
  rolePrefix = "mtp.";
  const std::string mtp = "model.layers." + std::to_string(cfg.numHiddenLayers) + ".";
  addWeight("embed", mtp + "embed_tokens.weight", Stack::None, {v, d},
            floatType);
  addWeight("enorm", mtp + "enorm.weight", Stack::None, {d}, floatType);
  addWeight("hnorm", mtp + "hnorm.weight", Stack::None, {d}, floatType);
  addWeight("eh_proj", mtp + "eh_proj.weight", Stack::None, {d, 2 * d},
            floatType);
  collectAttentionWeights(Stack::Mtp);
  if (cfg.nRoutedExperts > 0)
    collectMoeWeights(Stack::Mtp);
  else
    collectDenseWeights(Stack::Mtp);
  addWeight("head_norm", mtp + "shared_head.norm.weight", Stack::None, {d},
            floatType);
  addWeight("head", mtp + "shared_head.head.weight", Stack::None, {v, d},
            floatType);
  rolePrefix = "";
}

void Importer::collectAttentionWeights(Stack stack) {
  const int64_t d = cfg.hiddenSize, h = cfg.numAttentionHeads;
  const int64_t nope = cfg.qkNopeHeadDim, rope = cfg.qkRopeHeadDim,
                vDim = cfg.vHeadDim, kv = cfg.kvLoraRank;
  Type floatType = floatWeightType();
  const std::string layer = "model.layers.{layer}.";
  const std::string attn = layer + "self_attn.";
  addWeight("attn.norm", layer + "input_layernorm.weight", stack, {d},
            floatType);
  if (cfg.qLoraRank) {
    int64_t q = *cfg.qLoraRank;
    addProjection("attn.wq_a", attn + "q_a_proj.weight", stack, {}, q, d);
    addWeight("attn.q_norm", attn + "q_a_layernorm.weight", stack, {q},
              floatType);
    addProjection("attn.wq_b", attn + "q_b_proj.weight", stack, {},
                  h * (nope + rope), q);
  } else {
    addProjection("attn.wq", attn + "q_proj.weight", stack, {},
                  h * (nope + rope), d);
  }
  addProjection("attn.wkv_a", attn + "kv_a_proj_with_mqa.weight", stack, {},
                kv + rope, d);
  addWeight("attn.kv_norm", attn + "kv_a_layernorm.weight", stack, {kv},
            floatType);
  addProjection("attn.wkv_b", attn + "kv_b_proj.weight", stack, {},
                h * (nope + vDim), kv);
  addProjection("attn.wo", attn + "o_proj.weight", stack, {}, d, h * vDim);
  addWeight("ffn.norm", layer + "post_attention_layernorm.weight", stack, {d},
            floatType);
}

void Importer::collectDenseWeights(Stack stack) {
  const int64_t d = cfg.hiddenSize, inter = cfg.intermediateSize;
  const std::string mlp = "model.layers.{layer}.mlp.";
  addProjection("dense.gate", mlp + "gate_proj.weight", stack, {}, inter, d);
  addProjection("dense.up", mlp + "up_proj.weight", stack, {}, inter, d);
  addProjection("dense.down", mlp + "down_proj.weight", stack, {}, d, inter);
}

void Importer::collectMoeWeights(Stack stack) {
  const int64_t d = cfg.hiddenSize, e = cfg.nRoutedExperts,
                inter = cfg.moeIntermediateSize;
  const std::string mlp = "model.layers.{layer}.mlp.";
  // The router stays in float even in FP8 checkpoints; its bias is f32.
  addWeight("moe.router", mlp + "gate.weight", stack, {e, d},
            floatWeightType());
  if (cfg.hasSelectionBias())
    addWeight("moe.router_bias", mlp + "gate.e_score_correction_bias", stack,
              {e}, builder.getF32Type());
  const std::string expert = mlp + "experts.{expert}.";
  addProjection("moe.expert_gate", expert + "gate_proj.weight", stack, {e},
                inter, d);
  addProjection("moe.expert_up", expert + "up_proj.weight", stack, {e}, inter,
                d);
  addProjection("moe.expert_down", expert + "down_proj.weight", stack, {e}, d,
                inter);
  if (cfg.nSharedExperts > 0) {
    const int64_t shared = cfg.nSharedExperts * inter;
    const std::string sh = mlp + "shared_experts.";
    addProjection("moe.shared_gate", sh + "gate_proj.weight", stack, {},
                  shared, d);
    addProjection("moe.shared_up", sh + "up_proj.weight", stack, {}, shared,
                  d);
    addProjection("moe.shared_down", sh + "down_proj.weight", stack, {}, d,
                  shared);
  }
}

int64_t Importer::cacheWidth() const {
  if (opts.kvCacheDType == KvCacheDType::FP8) {
    // A packed FP8 layout in bytes (DSV3Ops.td, dsv3.mla): the codes, one
    // f32 scale per tile of 128 of them (or of the whole row), the latent
    // layout's rope key in bf16.
    const int64_t codes =
        opts.cacheLayout == CacheLayout::Latent
            ? cfg.kvLoraRank
            : cfg.numAttentionHeads *
                  (cfg.qkNopeHeadDim + cfg.qkRopeHeadDim + cfg.vHeadDim);
    return packedFp8CacheWidth(
        codes, opts.cacheLayout == CacheLayout::Latent ? cfg.qkRopeHeadDim : 0);
  }
  if (opts.cacheLayout == CacheLayout::Latent)
    return cfg.kvLoraRank + cfg.qkRopeHeadDim;
  return cfg.numAttentionHeads *
         (cfg.qkNopeHeadDim + cfg.qkRopeHeadDim + cfg.vHeadDim);
}

RankedTensorType Importer::cacheType() {
  Type element = builder.getF32Type();
  if (opts.kvCacheDType == KvCacheDType::BF16)
    element = builder.getBF16Type();
  else if (opts.kvCacheDType == KvCacheDType::FP8)
    element = builder.getI8Type();
  return RankedTensorType::get(
      {cfg.numHiddenLayers, opts.maxBatch, maxSeqLen, cacheWidth()}, element);
}

RankedTensorType Importer::mtpCacheType() {
  RankedTensorType main = cacheType();
  SmallVector<int64_t> shape(main.getShape());
  shape[0] = 1;
  return RankedTensorType::get(shape, main.getElementType());
}

RankedTensorType Importer::hiddenType() {
  return RankedTensorType::get(
      {opts.maxBatch, ShapedType::kDynamic, cfg.hiddenSize},
      builder.getF32Type());
}

Value Importer::sliceLeading(Value stacked, Value index) {
  auto type = cast<RankedTensorType>(stacked.getType());
  ArrayRef<int64_t> shape = type.getShape();
  SmallVector<OpFoldResult> offsets(shape.size(), builder.getIndexAttr(0));
  offsets[0] = index;
  SmallVector<OpFoldResult> sizes{builder.getIndexAttr(1)};
  for (int64_t dim : shape.drop_front())
    sizes.push_back(builder.getIndexAttr(dim));
  SmallVector<OpFoldResult> strides(shape.size(), builder.getIndexAttr(1));
  auto sliceType =
      RankedTensorType::get(shape.drop_front(), type.getElementType());
  return tensor::ExtractSliceOp::create(builder, loc, sliceType, stacked,
                                        offsets, sizes, strides);
}

Value Importer::weight(StringRef role, Value index) {
  auto it = weights.find(rolePrefix + role.str());
  assert(it != weights.end() && "weight role not collected");
  Value arg = it->second;
  if (!index)
    return arg;
  return sliceLeading(arg, index);
}

Value Importer::buildMla(Value normed, Value positions, Value layerCache,
                         Value index, Value &updatedCache) {
  RopeAttr ropeAttr;
  if (cfg.yarn)
    ropeAttr = RopeAttr::get(&ctx, cfg.ropeTheta, cfg.yarn->factor,
                             cfg.yarn->originalMaxPositionEmbeddings,
                             cfg.yarn->betaFast, cfg.yarn->betaSlow);
  else
    ropeAttr = RopeAttr::get(&ctx, cfg.ropeTheta, 1.0, 0, 32.0, 1.0);
  IntegerAttr qLoraRank;
  if (cfg.qLoraRank)
    qLoraRank = builder.getI64IntegerAttr(*cfg.qLoraRank);
  auto mla = MlaOp::create(
      builder, loc, normed.getType(), layerCache.getType(), normed, positions,
      layerCache, weightOrNull("attn.wq_a", index),
      weightOrNull("attn.wq_a.scale", index),
      weightOrNull("attn.q_norm", index), weightOrNull("attn.wq_b", index),
      weightOrNull("attn.wq_b.scale", index), weightOrNull("attn.wq", index),
      weightOrNull("attn.wq.scale", index), /*wq_kv_a=*/Value(),
      /*wq_kv_a_scale=*/Value(), weight("attn.wkv_a", index),
      weightOrNull("attn.wkv_a.scale", index), weight("attn.kv_norm", index),
      weight("attn.wkv_b", index), weightOrNull("attn.wkv_b.scale", index),
      weight("attn.wo", index), weightOrNull("attn.wo.scale", index),
      cfg.numAttentionHeads, qLoraRank, cfg.kvLoraRank, cfg.qkNopeHeadDim,
      cfg.qkRopeHeadDim, cfg.vHeadDim, APFloat(cfg.softmaxScale()),
      APFloat(cfg.rmsNormEps), ropeAttr, /*expand_from=*/IntegerAttr());
  // dsv3-fuse-latent-projection names the prepared q_a|kv_a concatenation
  // of this block after its weights' roles.
  if (!rolePrefix.empty())
    mla->setAttr("dsv3.weight_prefix", builder.getStringAttr(rolePrefix));
  updatedCache = mla.getUpdatedCache();
  return mla.getResult();
}

Value Importer::buildDenseFfn(Value normed, Value index) {
  return SwigluMlpOp::create(builder, loc, normed.getType(), normed,
                             weight("dense.gate", index),
                             weight("dense.up", index),
                             weight("dense.down", index),
                             weightOrNull("dense.gate.scale", index),
                             weightOrNull("dense.up.scale", index),
                             weightOrNull("dense.down.scale", index));
}

Value Importer::buildMoe(Value normed, Value index) {
  ScoringFunc scoring = cfg.scoringFunc == ::dsv3::ScoringFunc::Sigmoid
                            ? ScoringFunc::Sigmoid
                            : ScoringFunc::Softmax;
  return MoeOp::create(
      builder, loc, normed.getType(), normed, weight("moe.router", index),
      weightOrNull("moe.router_bias", index), weight("moe.expert_gate", index),
      weight("moe.expert_up", index), weight("moe.expert_down", index),
      weightOrNull("moe.expert_gate.scale", index),
      weightOrNull("moe.expert_up.scale", index),
      weightOrNull("moe.expert_down.scale", index),
      weightOrNull("moe.shared_gate", index),
      weightOrNull("moe.shared_up", index),
      weightOrNull("moe.shared_down", index),
      weightOrNull("moe.shared_gate.scale", index),
      weightOrNull("moe.shared_up.scale", index),
      weightOrNull("moe.shared_down.scale", index), cfg.nRoutedExperts,
      cfg.numExpertsPerTok, cfg.nGroup, cfg.topkGroup, scoring,
      cfg.normTopkProb, APFloat(cfg.routedScalingFactor));
}

std::pair<Value, Value> Importer::buildBlock(Value hidden, Value positions,
                                             Value cache, Value attnIndex,
                                             Value ffnIndex, bool isMoe) {
  APFloat eps(cfg.rmsNormEps);
  // Pre-norm residual block (spec §2.3): x += MLA(norm(x)); x += FFN(norm(x)).
  Value attnIn = RmsNormOp::create(builder, loc, hidden.getType(), hidden,
                                   weight("attn.norm", attnIndex), eps);
  Value layerCache = sliceLeading(cache, attnIndex);
  Value updatedLayerCache;
  Value attnOut =
      buildMla(attnIn, positions, layerCache, attnIndex, updatedLayerCache);
  Value afterAttn = arith::AddFOp::create(builder, loc, hidden, attnOut);

  Value ffnIn = RmsNormOp::create(builder, loc, hidden.getType(), afterAttn,
                                  weight("ffn.norm", attnIndex), eps);
  Value ffnOut =
      isMoe ? buildMoe(ffnIn, ffnIndex) : buildDenseFfn(ffnIn, ffnIndex);
  Value out = arith::AddFOp::create(builder, loc, afterAttn, ffnOut);

  // Write the layer's cache back into the stacked cache.
  auto cacheShape = cast<RankedTensorType>(cache.getType()).getShape();
  SmallVector<OpFoldResult> offsets(4, builder.getIndexAttr(0));
  offsets[0] = attnIndex;
  SmallVector<OpFoldResult> sizes{builder.getIndexAttr(1)};
  for (int64_t dim : cacheShape.drop_front())
    sizes.push_back(builder.getIndexAttr(dim));
  SmallVector<OpFoldResult> strides(4, builder.getIndexAttr(1));
  Value newCache = tensor::InsertSliceOp::create(
      builder, loc, updatedLayerCache, cache, offsets, sizes, strides);
  return {out, newCache};
}

func::FuncOp Importer::buildForward(ModuleOp module, bool allPositions) {
  auto i32 = builder.getI32Type(), i64 = builder.getI64Type();
  const int64_t batch = opts.maxBatch;
  auto tokensType = RankedTensorType::get({batch, ShapedType::kDynamic}, i32);
  auto positionsType =
      RankedTensorType::get({batch, ShapedType::kDynamic}, i64);
  auto logitsType =
      allPositions
          ? RankedTensorType::get({batch, ShapedType::kDynamic, cfg.vocabSize},
                                  builder.getF32Type())
          : RankedTensorType::get({batch, cfg.vocabSize},
                                  builder.getF32Type());

  SmallVector<Type> argTypes{tokensType, positionsType, cacheType()};
  for (const WeightSpec &spec : specs)
    if (!spec.mtp)
      argTypes.push_back(spec.type);
  SmallVector<Type> resultTypes{logitsType};
  if (allPositions)
    resultTypes.push_back(hiddenType());
  resultTypes.push_back(cacheType());
  auto funcType = builder.getFunctionType(argTypes, resultTypes);

  builder.setInsertionPointToEnd(module.getBody());
  auto forward = func::FuncOp::create(
      builder, loc, allPositions ? "forward_all" : "forward", funcType);
  forward.setPrivate();
  Block *entry = forward.addEntryBlock();
  builder.setInsertionPointToStart(entry);
  weights.clear();
  unsigned argIndex = 3;
  for (const WeightSpec &spec : specs)
    if (!spec.mtp)
      weights[spec.role] = entry->getArgument(argIndex++);

  Value tokens = entry->getArgument(0);
  Value positions = entry->getArgument(1);
  Value cache = entry->getArgument(2);
  Value hidden = EmbeddingOp::create(builder, loc, hiddenType(),
                                     weight("embed"), tokens);

  Value zero = arith::ConstantIndexOp::create(builder, loc, 0);
  Value one = arith::ConstantIndexOp::create(builder, loc, 1);
  const int64_t numDense = cfg.numDenseLayers();
  const int64_t numMoe = cfg.numMoeLayers();

  // One loop per layer kind. Dense layers come first (layers
  // [0, first_k_dense_replace)), then the MoE layers.
  auto emitLoop = [&](int64_t count, int64_t firstLayer, bool isMoe) {
    Value upper = arith::ConstantIndexOp::create(builder, loc, count);
    auto loop = scf::ForOp::create(
        builder, loc, zero, upper, one, ValueRange{hidden, cache},
        [&](OpBuilder &nested, Location nestedLoc, Value iv,
            ValueRange carried) {
          OpBuilder::InsertionGuard guard(builder);
          builder.setInsertionPoint(nested.getInsertionBlock(),
                                    nested.getInsertionPoint());
          Value attnIndex = iv;
          if (firstLayer != 0) {
            Value offset =
                arith::ConstantIndexOp::create(builder, nestedLoc, firstLayer);
            attnIndex = arith::AddIOp::create(builder, nestedLoc, iv, offset);
          }
          auto [newHidden, newCache] = buildBlock(
              carried[0], positions, carried[1], attnIndex, iv, isMoe);
          scf::YieldOp::create(builder, nestedLoc,
                               ValueRange{newHidden, newCache});
        });
    hidden = loop.getResult(0);
    cache = loop.getResult(1);
  };
  if (numDense > 0)
    emitLoop(numDense, 0, /*isMoe=*/false);
  if (numMoe > 0)
    emitLoop(numMoe, numDense, /*isMoe=*/true);

  Value head = cfg.tieWordEmbeddings ? weight("embed") : weight("lm_head");
  if (allPositions) {
    // Speculative verification needs every position's logits, and the MTP
    // draft every position's normalised hidden state (what vLLM passes as
    // previous_hidden_states).
    Value normed = RmsNormOp::create(builder, loc, hiddenType(), hidden,
                                     weight("final_norm"),
                                     APFloat(cfg.rmsNormEps));
    Value logits = LinearOp::create(builder, loc, logitsType, normed, head,
                                    /*scale=*/Value());
    func::ReturnOp::create(builder, loc, ValueRange{logits, normed, cache});
    return forward;
  }
  // Only the last position's logits are needed (spec §2.2): slice it out
  // before the final norm and the head.
  Value lastHidden = sliceLastPosition(hidden, tokens);
  Value normed = RmsNormOp::create(builder, loc, lastHidden.getType(),
                                   lastHidden, weight("final_norm"),
                                   APFloat(cfg.rmsNormEps));
  Value logits = LinearOp::create(builder, loc, logitsType, normed, head,
                                  /*scale=*/Value());
  func::ReturnOp::create(builder, loc, ValueRange{logits, cache});
  return forward;
}

Value Importer::sliceLastPosition(Value hidden, Value tokens) {
  const int64_t batch = opts.maxBatch;
  Value one = arith::ConstantIndexOp::create(builder, loc, 1);
  Value seqLen = tensor::DimOp::create(builder, loc, tokens, 1);
  Value last = arith::SubIOp::create(builder, loc, seqLen, one);
  SmallVector<OpFoldResult> offsets{builder.getIndexAttr(0), last,
                                    builder.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes{builder.getIndexAttr(batch),
                                  builder.getIndexAttr(1),
                                  builder.getIndexAttr(cfg.hiddenSize)};
  SmallVector<OpFoldResult> strides(3, builder.getIndexAttr(1));
  auto lastType =
      RankedTensorType::get({batch, cfg.hiddenSize}, builder.getF32Type());
  return tensor::ExtractSliceOp::create(builder, loc, lastType, hidden,
                                        offsets, sizes, strides);
}

func::FuncOp Importer::buildDraft(ModuleOp module) {
  auto i32 = builder.getI32Type(), i64 = builder.getI64Type();
  auto f32 = builder.getF32Type();
  const int64_t batch = opts.maxBatch;
  auto tokensType = RankedTensorType::get({batch, ShapedType::kDynamic}, i32);
  auto positionsType =
      RankedTensorType::get({batch, ShapedType::kDynamic}, i64);
  auto logitsType = RankedTensorType::get({batch, cfg.vocabSize}, f32);
  auto lastType = RankedTensorType::get({batch, cfg.hiddenSize}, f32);
  RankedTensorType cache = mtpCacheType();

  SmallVector<Type> argTypes{tokensType, positionsType, hiddenType(), cache};
  for (const WeightSpec &spec : specs)
    if (spec.mtp)
      argTypes.push_back(spec.type);
  auto funcType =
      builder.getFunctionType(argTypes, {logitsType, lastType, cache});
  builder.setInsertionPointToEnd(module.getBody());
  auto draft = func::FuncOp::create(builder, loc, "mtp_forward", funcType);
  draft.setPrivate();
  Block *entry = draft.addEntryBlock();
  builder.setInsertionPointToStart(entry);
  weights.clear();
  unsigned argIndex = 4;
  for (const WeightSpec &spec : specs)
    if (spec.mtp)
      weights[spec.role] = entry->getArgument(argIndex++);
  rolePrefix = "mtp.";

  // Position i combines the main model's hidden state at i with the
  // embedding of token i + 1 (spec §6; embedding first, as vLLM's
  // DeepSeekMultiTokenPredictorLayer concatenates).
  Value tokens = entry->getArgument(0);
  Value positions = entry->getArgument(1);
  Value previous = entry->getArgument(2);
  APFloat eps(cfg.rmsNormEps);
  Value embedded = EmbeddingOp::create(builder, loc, hiddenType(),
                                       weight("embed"), tokens);
  Value embedNormed = RmsNormOp::create(builder, loc, hiddenType(), embedded,
                                        weight("enorm"), eps);
  Value hiddenNormed = RmsNormOp::create(builder, loc, hiddenType(), previous,
                                         weight("hnorm"), eps);
  auto pairType = RankedTensorType::get(
      {batch, ShapedType::kDynamic, 2 * cfg.hiddenSize}, f32);
  Value pair = tensor::ConcatOp::create(builder, loc, pairType, /*dim=*/2,
                                        ValueRange{embedNormed, hiddenNormed});
  Value projected = LinearOp::create(builder, loc, hiddenType(), pair,
                                     weight("eh_proj"), /*scale=*/Value());
  Value zero = arith::ConstantIndexOp::create(builder, loc, 0);
  auto [blockOut, newCache] =
      buildBlock(projected, positions, entry->getArgument(3), zero, zero,
                 /*isMoe=*/cfg.nRoutedExperts > 0);
  // The block's output before the head's norm: what a further draft step
  // takes as its previous hidden state.
  Value last = sliceLastPosition(blockOut, tokens);
  Value normed = RmsNormOp::create(builder, loc, lastType, last,
                                   weight("head_norm"), eps);
  Value logits = LinearOp::create(builder, loc, logitsType, normed,
                                  weight("head"), /*scale=*/Value());
  func::ReturnOp::create(builder, loc, ValueRange{logits, last, newCache});
  rolePrefix = "";
  return draft;
}

void Importer::buildEntry(ModuleOp module, func::FuncOp callee,
                          StringRef name, int64_t seqLen,
                          ArrayRef<StringRef> inputNames,
                          ArrayRef<int64_t> resultDestinations, bool mtp) {
  FunctionType calleeType = callee.getFunctionType();
  SmallVector<Type> argTypes(calleeType.getInputs());
  // Tokens, positions (and the MTP draft's hidden states) get the entry's
  // token count.
  SmallVector<Type> resultTypes(calleeType.getResults());
  auto withSeqLen = [&](Type type) -> Type {
    auto ranked = cast<RankedTensorType>(type);
    if (ranked.getRank() < 2 || !ranked.isDynamicDim(1))
      return type;
    SmallVector<int64_t> shape(ranked.getShape());
    shape[1] = seqLen;
    return RankedTensorType::get(shape, ranked.getElementType());
  };
  for (unsigned i = 0; i < inputNames.size(); ++i)
    argTypes[i] = withSeqLen(argTypes[i]);
  for (Type &type : resultTypes)
    type = withSeqLen(type);
  auto funcType = builder.getFunctionType(argTypes, resultTypes);

  builder.setInsertionPointToEnd(module.getBody());
  auto entryFunc = func::FuncOp::create(builder, loc, name, funcType);
  entryFunc->setAttr("llvm.emit_c_interface", builder.getUnitAttr());
  // How the runtime's packed wrapper passes results back (see
  // dsv3-emit-packed-entry-points): outputs into separate buffers (-1, in
  // order), the updated KV cache into its input.
  entryFunc->setAttr("dsv3.entry", builder.getStringAttr(name));
  entryFunc->setAttr("dsv3.result_destinations",
                     builder.getDenseI64ArrayAttr(resultDestinations));
  SmallVector<int64_t> resultBytes;
  for (Type type : resultTypes)
    resultBytes.push_back(
        std::max<int64_t>(
            1, cast<RankedTensorType>(type).getElementTypeBitWidth() / 8));
  entryFunc->setAttr("dsv3.result_element_bytes",
                     builder.getDenseI64ArrayAttr(resultBytes));
  for (auto [i, input] : llvm::enumerate(inputNames))
    entryFunc.setArgAttr(i, "dsv3.input", builder.getStringAttr(input));
  unsigned argIndex = inputNames.size();
  for (const WeightSpec &spec : specs) {
    if (spec.mtp != mtp)
      continue;
    const unsigned i = argIndex++;
    entryFunc.setArgAttr(i, "dsv3.weight", builder.getStringAttr(spec.role));
    entryFunc.setArgAttr(i, "dsv3.source",
                         builder.getStringAttr(spec.source));
    // Which checkpoint layers fill the leading stack dimension, and whether
    // the next dimension enumerates experts: the runtime packs from this.
    int64_t first = 0, count = 0;
    switch (spec.stack) {
    case Stack::None:
      break;
    case Stack::Attention:
      count = cfg.numHiddenLayers;
      break;
    case Stack::Dense:
      count = cfg.numDenseLayers();
      break;
    case Stack::Moe:
      first = cfg.numDenseLayers();
      count = cfg.numMoeLayers();
      break;
    case Stack::Mtp:
      first = cfg.numHiddenLayers;
      count = 1;
      break;
    }
    if (spec.stack != Stack::None)
      entryFunc.setArgAttr(i, "dsv3.layers",
                           builder.getDenseI64ArrayAttr({first, count}));
    if (StringRef(spec.source).contains("{expert}"))
      entryFunc.setArgAttr(i, "dsv3.experts",
                           builder.getI64IntegerAttr(cfg.nRoutedExperts));
  }
  Block *entry = entryFunc.addEntryBlock();
  builder.setInsertionPointToStart(entry);
  SmallVector<Value> args(entry->getArguments());
  // The shared body takes a dynamic token count.
  for (unsigned i = 0; i < inputNames.size(); ++i)
    if (args[i].getType() != calleeType.getInput(i))
      args[i] = tensor::CastOp::create(builder, loc, calleeType.getInput(i),
                                       args[i]);
  auto call = func::CallOp::create(builder, loc, callee, args);
  SmallVector<Value> results;
  for (auto [result, type] : llvm::zip_equal(call.getResults(), resultTypes))
    results.push_back(result.getType() == type
                          ? Value(result)
                          : Value(tensor::CastOp::create(builder, loc, type,
                                                         result)));
  func::ReturnOp::create(builder, loc, results);
}

ImportResult Importer::run() {
  ImportResult result;
  if (opts.maxBatch <= 0) {
    result.error = "max batch must be positive, got " +
                   std::to_string(opts.maxBatch);
    return result;
  }
  maxSeqLen = opts.maxSeqLen;
  if (maxSeqLen == 0)
    maxSeqLen = std::min<int64_t>(cfg.maxPositionEmbeddings > 0
                                      ? cfg.maxPositionEmbeddings
                                      : 4096,
                                  4096);
  if (maxSeqLen < 0 || (cfg.maxPositionEmbeddings > 0 &&
                        maxSeqLen > cfg.maxPositionEmbeddings)) {
    result.error = "max sequence length must be in [1, " +
                   std::to_string(cfg.maxPositionEmbeddings) +
                   "] (max_position_embeddings), got " +
                   std::to_string(maxSeqLen);
    return result;
  }
  if (opts.kvCacheDType == KvCacheDType::FP8 &&
      opts.cacheLayout == CacheLayout::Latent && cfg.kvLoraRank % 16 != 0) {
    result.error = "the FP8 latent KV cache needs kv_lora_rank to be a "
                   "multiple of 16, got " +
                   std::to_string(cfg.kvLoraRank);
    return result;
  }
  // Stacking assumes the MoE layers are exactly [first_k_dense_replace, L),
  // which holds for moe_layer_freq == 1 (every released DeepSeek V2/V3).
  if (opts.mtp && cfg.numNextnPredictLayers < 1) {
    result.error = "MTP speculative decoding needs a checkpoint with an MTP "
                   "module (config field 'num_nextn_predict_layers' >= 1), "
                   "got 0";
    return result;
  }
  if (cfg.numMoeLayers() > 0 && cfg.moeLayerFreq != 1) {
    result.error = "config field 'moe_layer_freq': only 1 is supported, got " +
                   std::to_string(cfg.moeLayerFreq);
    return result;
  }

  ctx.loadDialect<DSV3Dialect, arith::ArithDialect, func::FuncDialect,
                  scf::SCFDialect, tensor::TensorDialect>();
  collectWeights();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  (*module)->setAttr("dsv3.max_batch",
                     builder.getI64IntegerAttr(opts.maxBatch));
  (*module)->setAttr("dsv3.max_seq_len", builder.getI64IntegerAttr(maxSeqLen));
  (*module)->setAttr("dsv3.config", builder.getStringAttr(
                                        ::dsv3::modelConfigToJson(cfg)));
  func::FuncOp forward = buildForward(*module, /*allPositions=*/false);
  const StringRef mainInputs[] = {"tokens", "positions", "kv_cache"};
  buildEntry(*module, forward, "prefill", ShapedType::kDynamic, mainInputs,
             {-1, 2}, /*mtp=*/false);
  buildEntry(*module, forward, "decode", 1, mainInputs, {-1, 2},
             /*mtp=*/false);
  if (opts.mtp) {
    // Speculative decoding (docs/speculative-decoding.md): @verify runs the
    // main model over the pending token and the drafts and returns every
    // position's logits and normalised hidden state; @draft runs the MTP
    // module on those hidden states and the tokens after them.
    func::FuncOp all = buildForward(*module, /*allPositions=*/true);
    buildEntry(*module, all, "verify", ShapedType::kDynamic, mainInputs,
               {-1, -1, 2}, /*mtp=*/false);
    func::FuncOp draft = buildDraft(*module);
    const StringRef draftInputs[] = {"tokens", "positions", "hidden",
                                     "mtp_cache"};
    buildEntry(*module, draft, "draft", ShapedType::kDynamic, draftInputs,
               {-1, -1, 3}, /*mtp=*/true);
  }
  if (failed(verify(*module))) {
    result.error = "internal error: the imported module does not verify";
    return result;
  }
  result.module = std::move(module);
  return result;
}

} // namespace

ImportResult mlir::dsv3::importModel(MLIRContext &context,
                                     const ::dsv3::ModelConfig &config,
                                     const ImportOptions &options) {
  return Importer(context, config, options).run();
}
