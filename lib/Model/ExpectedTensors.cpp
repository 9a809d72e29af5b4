//===- ExpectedTensors.cpp - Check a checkpoint against its config --------===//
//
// Derives the list of HF tensor names, shapes and dtypes that a ModelConfig
// implies (spec §3.1, §5.1, §7.1, §8.2) and compares a Checkpoint with it.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Model/Checkpoint.h"

#include "Support.h"

#include <algorithm>
#include <unordered_set>

namespace dsv3 {

namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Appends the tensors of a model in HF order.
class TensorListBuilder {
public:
  explicit TensorListBuilder(const ModelConfig &config) : c(config) {}

  /// Norms, embeddings, head and router: never quantised.
  void addFloat(std::string name, std::vector<int64_t> shape) {
    out.push_back({std::move(name), floatTypes(), std::move(shape)});
  }

  /// A linear layer `<prefix>.weight` of shape [rows, cols]: F8_E4M3 plus a
  /// block-scale tensor under FP8, a float weight otherwise.
  void addProjection(const std::string &prefix, int64_t rows, int64_t cols) {
    if (!c.fp8) {
      addFloat(prefix + ".weight", {rows, cols});
      return;
    }
    out.push_back({prefix + ".weight", {DType::F8E4M3}, {rows, cols}});
    out.push_back(
        {prefix + ".weight_scale_inv",
         {DType::F32},
         {ceilDiv(rows, c.fp8->blockRows), ceilDiv(cols, c.fp8->blockCols)}});
  }

  /// gate_proj/up_proj [width, D] and down_proj [D, width].
  void addFeedForward(const std::string &prefix, int64_t width) {
    addProjection(prefix + ".gate_proj", width, c.hiddenSize);
    addProjection(prefix + ".up_proj", width, c.hiddenSize);
    addProjection(prefix + ".down_proj", c.hiddenSize, width);
  }

  void addLayer(int64_t layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    const int64_t d = c.hiddenSize, h = c.numAttentionHeads;
    addFloat(p + "input_layernorm.weight", {d});
    addFloat(p + "post_attention_layernorm.weight", {d});

    // Multi-head latent attention (spec §3.1).
    const std::string a = p + "self_attn.";
    if (c.qLoraRank) {
      addProjection(a + "q_a_proj", *c.qLoraRank, d);
      addFloat(a + "q_a_layernorm.weight", {*c.qLoraRank});
      addProjection(a + "q_b_proj", h * c.qkHeadDim(), *c.qLoraRank);
    } else {
      addProjection(a + "q_proj", h * c.qkHeadDim(), d);
    }
    addProjection(a + "kv_a_proj_with_mqa", c.kvLoraRank + c.qkRopeHeadDim, d);
    addFloat(a + "kv_a_layernorm.weight", {c.kvLoraRank});
    addProjection(a + "kv_b_proj", h * (c.qkNopeHeadDim + c.vHeadDim),
                  c.kvLoraRank);
    addProjection(a + "o_proj", d, h * c.vHeadDim);

    const std::string m = p + "mlp";
    if (!c.isMoeLayer(layer)) {
      addFeedForward(m, c.intermediateSize);
      return;
    }
    // Mixture of experts (spec §5.1). The router's selection bias is F32 in
    // the released checkpoints; any float type is accepted.
    addFloat(m + ".gate.weight", {c.nRoutedExperts, d});
    if (c.hasSelectionBias())
      addFloat(m + ".gate.e_score_correction_bias", {c.nRoutedExperts});
    for (int64_t e = 0; e < c.nRoutedExperts; ++e)
      addFeedForward(m + ".experts." + std::to_string(e),
                     c.moeIntermediateSize);
    if (c.nSharedExperts > 0)
      addFeedForward(m + ".shared_experts",
                     c.nSharedExperts * c.moeIntermediateSize);
  }

  std::vector<ExpectedTensor> build() {
    addFloat("model.embed_tokens.weight", {c.vocabSize, c.hiddenSize});
    for (int64_t layer = 0; layer < c.numHiddenLayers; ++layer)
      addLayer(layer);
    addFloat("model.norm.weight", {c.hiddenSize});
    if (!c.tieWordEmbeddings)
      addFloat("lm_head.weight", {c.vocabSize, c.hiddenSize});
    return std::move(out);
  }

private:
  static std::vector<DType> floatTypes() {
    return {DType::F32, DType::BF16, DType::F16};
  }

  const ModelConfig &c;
  std::vector<ExpectedTensor> out;
};

std::string dtypeList(const std::vector<DType> &dtypes) {
  std::string s;
  for (size_t i = 0; i < dtypes.size(); ++i)
    s += (i ? (i + 1 == dtypes.size() ? " or " : ", ") : "") +
         std::string(dtypeName(dtypes[i]));
  return s;
}

/// "" or the problem with one tensor.
std::string checkTensor(const Checkpoint &checkpoint,
                        const ExpectedTensor &expected) {
  const TensorInfo *t = checkpoint.find(expected.name);
  if (!t)
    return checkpoint.path() + ": missing tensor '" + expected.name +
           "' (expected " + dtypeList(expected.dtypes) + " " +
           detail::formatShape(expected.shape) + ")";
  std::string where = t->file + ": tensor '" + t->name + "': ";
  if (t->shape != expected.shape)
    return where + "shape " + detail::formatShape(t->shape) +
           " but the config requires " + detail::formatShape(expected.shape);
  if (std::find(expected.dtypes.begin(), expected.dtypes.end(), t->dtype) ==
      expected.dtypes.end())
    return where + "dtype " + dtypeName(t->dtype) +
           " but the config requires " + dtypeList(expected.dtypes);
  return "";
}

} // namespace

std::vector<ExpectedTensor> expectedTensors(const ModelConfig &config) {
  try {
    return TensorListBuilder(config).build();
  } catch (...) {
    return {}; // allocation failure only
  }
}

bool isMtpTensorName(const std::string &name, const ModelConfig &config) {
  static const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0)
    return false;
  size_t pos = prefix.size();
  int64_t layer = 0;
  size_t digits = 0;
  while (pos < name.size() && name[pos] >= '0' && name[pos] <= '9' &&
         digits < 18) {
    layer = layer * 10 + (name[pos] - '0');
    ++pos;
    ++digits;
  }
  return digits > 0 && pos < name.size() && name[pos] == '.' &&
         layer >= config.numHiddenLayers;
}

std::string validateCheckpoint(const Checkpoint &checkpoint,
                               const ModelConfig &config) {
  try {
    std::string first;
    size_t problems = 0;
    for (const ExpectedTensor &expected : expectedTensors(config)) {
      std::string problem = checkTensor(checkpoint, expected);
      if (problem.empty())
        continue;
      if (problems++ == 0)
        first = std::move(problem);
    }
    if (problems > 1)
      first += " (and " + std::to_string(problems - 1) + " more problem" +
               (problems > 2 ? "s" : "") + ")";
    return first;
  } catch (const std::exception &e) {
    return checkpoint.path() + ": " + e.what();
  } catch (...) {
    return checkpoint.path() + ": unknown error while validating";
  }
}

std::vector<std::string> unexpectedTensors(const Checkpoint &checkpoint,
                                           const ModelConfig &config) {
  std::vector<std::string> result;
  try {
    std::unordered_set<std::string> expected;
    for (ExpectedTensor &e : expectedTensors(config))
      expected.insert(std::move(e.name));
    for (const TensorInfo &t : checkpoint.tensors())
      if (!expected.count(t.name) && !isMtpTensorName(t.name, config))
        result.push_back(t.name);
  } catch (...) {
    result.clear(); // allocation failure only
  }
  return result; // tensors() is sorted, so this is too
}

} // namespace dsv3
