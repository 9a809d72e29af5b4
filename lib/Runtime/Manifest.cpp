//===- Manifest.cpp - Parse and check an artifact's manifest.json ---------===//
//
// Every check here protects the compiled code from arguments it was not built
// for: the entry points trust the descriptors the runtime builds from this
// file, so a manifest that passes must describe buffers the runtime can fill
// consistently (static weight and cache shapes, [max_batch, -1] token inputs,
// [max_batch, vocab] f32 logits).
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/Manifest.h"

#include "dsv3/Model/JsonLimits.h"

#include "Support.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <elf.h>
#include <fstream>
#include <set>
#include <sys/stat.h>

using json = nlohmann::json;

namespace dsv3 {
namespace runtime {

size_t elementSize(ElementType type) {
  switch (type) {
  case ElementType::F32:
  case ElementType::I32:
    return 4;
  case ElementType::BF16:
  case ElementType::F16:
    return 2;
  case ElementType::F8E4M3:
  case ElementType::I8:
    return 1;
  case ElementType::I64:
    return 8;
  }
  return 0;
}

const char *elementTypeName(ElementType type) {
  switch (type) {
  case ElementType::F32:
    return "f32";
  case ElementType::BF16:
    return "bf16";
  case ElementType::F16:
    return "f16";
  case ElementType::F8E4M3:
    return "f8e4m3";
  case ElementType::I8:
    return "i8";
  case ElementType::I32:
    return "i32";
  case ElementType::I64:
    return "i64";
  }
  return "?";
}

std::optional<ElementType> parseElementType(const std::string &name) {
  for (ElementType t : {ElementType::F32, ElementType::BF16, ElementType::F16,
                        ElementType::F8E4M3, ElementType::I8, ElementType::I32,
                        ElementType::I64})
    if (name == elementTypeName(t))
      return t;
  return std::nullopt;
}

std::optional<DType> checkpointDType(ElementType type) {
  switch (type) {
  case ElementType::F32:
    return DType::F32;
  case ElementType::BF16:
    return DType::BF16;
  case ElementType::F16:
    return DType::F16;
  case ElementType::F8E4M3:
    return DType::F8E4M3;
  case ElementType::I8:
    return DType::I8;
  case ElementType::I32:
    return DType::I32;
  case ElementType::I64:
    return DType::I64;
  }
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// WeightSpec
//===----------------------------------------------------------------------===//

int64_t WeightSpec::numSlices() const {
  int64_t n = numLayers.value_or(1);
  if (numExperts)
    n *= *numExperts;
  return n;
}

std::vector<int64_t> WeightSpec::sliceShape() const {
  size_t stackDims = (numLayers ? 1 : 0) + (numExperts ? 1 : 0);
  return std::vector<int64_t>(shape.begin() + stackDims, shape.end());
}

size_t WeightSpec::sliceBytes() const {
  size_t bytes = elementSize(dtype);
  for (int64_t d : sliceShape())
    bytes *= static_cast<size_t>(d);
  return bytes;
}

size_t WeightSpec::numBytes() const {
  return sliceBytes() * static_cast<size_t>(numSlices());
}

static void replaceAll(std::string &s, const std::string &from,
                       const std::string &to) {
  for (size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

std::string WeightSpec::sliceSource(int64_t index) const {
  std::string name = source;
  if (!numLayers)
    return name;
  int64_t experts = numExperts.value_or(1);
  replaceAll(name, "{layer}", std::to_string(*firstLayer + index / experts));
  if (numExperts)
    replaceAll(name, "{expert}", std::to_string(index % experts));
  return name;
}

std::string WeightSpec::sliceLabel(int64_t index) const {
  if (!numLayers)
    return "";
  int64_t experts = numExperts.value_or(1);
  std::string label = "layer " + std::to_string(*firstLayer + index / experts);
  if (numExperts)
    label += ", expert " + std::to_string(index % experts);
  return label;
}

//===----------------------------------------------------------------------===//
// Manifest
//===----------------------------------------------------------------------===//

size_t Manifest::weightsBytes() const {
  size_t total = 0;
  for (const WeightSpec &w : weights)
    total += w.numBytes();
  return total;
}

size_t Manifest::kvCacheBytes() const {
  const TensorSpec &cache = inputs[cacheInput];
  size_t bytes = elementSize(cache.dtype);
  for (int64_t d : cache.shape)
    bytes *= static_cast<size_t>(d);
  return bytes;
}

std::string Manifest::libraryPath() const {
  return artifactDir + "/" + library;
}

namespace {

/// Thrown inside this file only; parseManifest turns it into the error line.
struct ManifestError {
  std::string message;
};

[[noreturn]] void fail(const std::string &field, const std::string &problem) {
  throw ManifestError{"field '" + field + "': " + problem};
}

const json &member(const json &object, const std::string &key,
                   const std::string &field) {
  auto it = object.find(key);
  if (it == object.end())
    fail(field.empty() ? key : field + "." + key, "missing");
  return *it;
}

std::string fieldName(const std::string &parent, const std::string &key) {
  return parent.empty() ? key : parent + "." + key;
}

const json &objectField(const json &object, const std::string &key,
                        const std::string &parent) {
  const json &value = member(object, key, parent);
  if (!value.is_object())
    fail(fieldName(parent, key), "must be an object, got " + jsonKind(value));
  return value;
}

const json &arrayField(const json &object, const std::string &key,
                       const std::string &parent) {
  const json &value = member(object, key, parent);
  if (!value.is_array())
    fail(fieldName(parent, key), "must be an array, got " + jsonKind(value));
  return value;
}

std::string stringField(const json &object, const std::string &key,
                        const std::string &parent) {
  const json &value = member(object, key, parent);
  if (!value.is_string())
    fail(fieldName(parent, key), "must be a string, got " + jsonKind(value));
  return value.get<std::string>();
}

int64_t intValue(const json &value, const std::string &field) {
  if (!value.is_number_integer())
    fail(field, "must be an integer, got " + jsonKind(value));
  if (value.is_number_unsigned() &&
      value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail(field, "is too large");
  return value.get<int64_t>();
}

int64_t intField(const json &object, const std::string &key,
                 const std::string &parent) {
  return intValue(member(object, key, parent), fieldName(parent, key));
}

ElementType dtypeField(const json &object, const std::string &field) {
  std::string name = stringField(object, "dtype", field);
  std::optional<ElementType> type = parseElementType(name);
  if (!type)
    fail(field + ".dtype", "unknown dtype '" + name +
                               "' (expected f32, bf16, f16, f8e4m3, i8, i32 "
                               "or i64)");
  return *type;
}

/// A shape: integers >= 1, or -1 where `allowDynamic`. The element count
/// times `elementBytes` must fit comfortably in size_t.
std::vector<int64_t> shapeField(const json &object, const std::string &field,
                                bool allowDynamic, size_t elementBytes) {
  const json &value = arrayField(object, "shape", field);
  std::vector<int64_t> shape;
  unsigned __int128 bytes = elementBytes;
  for (size_t i = 0; i < value.size(); ++i) {
    std::string dimField = field + ".shape[" + std::to_string(i) + "]";
    int64_t dim = intValue(value[i], dimField);
    if (dim == kDynamic && allowDynamic) {
      shape.push_back(dim);
      continue;
    }
    if (dim < 1)
      fail(dimField, std::string("must be ") +
                         (allowDynamic ? "-1 or " : "") + ">= 1, got " +
                         std::to_string(dim));
    bytes *= static_cast<uint64_t>(dim);
    if (bytes > (static_cast<unsigned __int128>(1) << 50))
      fail(field + ".shape", "is too large (" + formatShape(shape) + "...)");
    shape.push_back(dim);
  }
  return shape;
}

TensorSpec tensorSpec(const json &value, const std::string &field,
                      bool allowDynamic) {
  if (!value.is_object())
    fail(field, "must be an object, got " + jsonKind(value));
  TensorSpec spec;
  spec.name = stringField(value, "name", field);
  spec.dtype = dtypeField(value, field);
  spec.shape =
      shapeField(value, field, allowDynamic, elementSize(spec.dtype));
  return spec;
}

/// Weights (checkpoint or prepared) are floating point.
void expectWeightDType(ElementType dtype, const std::string &field) {
  if (dtype == ElementType::I8 || dtype == ElementType::I32 ||
      dtype == ElementType::I64)
    fail(field + ".dtype", "a weight must be f32, bf16, f16 or f8e4m3, got " +
                               std::string(elementTypeName(dtype)));
}

WeightSpec weightSpec(const json &value, const std::string &field,
                      const ModelConfig &config) {
  if (!value.is_object())
    fail(field, "must be an object, got " + jsonKind(value));
  WeightSpec w;
  w.role = stringField(value, "role", field);
  w.source = stringField(value, "source", field);
  w.dtype = dtypeField(value, field);
  expectWeightDType(w.dtype, field);
  w.shape = shapeField(value, field, /*allowDynamic=*/false,
                       elementSize(w.dtype));

  auto layersIt = value.find("layers");
  if (layersIt != value.end() && !layersIt->is_null()) {
    const json &layers = *layersIt;
    if (!layers.is_array() || layers.size() != 2)
      fail(field + ".layers", "must be null or [first, count], got " +
                                  layers.dump());
    int64_t first = intValue(layers[0], field + ".layers[0]");
    int64_t count = intValue(layers[1], field + ".layers[1]");
    // count > layers - first: first + count could overflow. The MTP
    // layers follow the main model's (num_hidden_layers + k).
    const int64_t layerCount =
        config.numHiddenLayers + config.numNextnPredictLayers;
    if (first < 0 || count < 1 || first > layerCount ||
        count > layerCount - first)
      fail(field + ".layers",
           "[" + std::to_string(first) + ", " + std::to_string(count) +
               "] is not a layer range of the model's " +
               std::to_string(layerCount) + " layers (MTP included)");
    w.firstLayer = first;
    w.numLayers = count;
  }
  auto expertsIt = value.find("experts");
  if (expertsIt != value.end() && !expertsIt->is_null()) {
    int64_t experts = intValue(*expertsIt, field + ".experts");
    if (experts < 1)
      fail(field + ".experts", "must be null or >= 1, got " +
                                   std::to_string(experts));
    if (!w.numLayers)
      fail(field + ".experts", "experts are stacked only inside layers "
                               "(layers must not be null)");
    w.numExperts = experts;
  }

  size_t stackDims = (w.numLayers ? 1 : 0) + (w.numExperts ? 1 : 0);
  if (w.shape.size() < stackDims + 1)
    fail(field + ".shape", "must have the " + std::to_string(stackDims) +
                               " stack dims and at least one more, got " +
                               formatShape(w.shape));
  if (w.numLayers && w.shape[0] != *w.numLayers)
    fail(field + ".shape", "dim 0 must be the layer count " +
                               std::to_string(*w.numLayers) + ", got " +
                               formatShape(w.shape));
  if (w.numExperts && w.shape[1] != *w.numExperts)
    fail(field + ".shape", "dim 1 must be the expert count " +
                               std::to_string(*w.numExperts) + ", got " +
                               formatShape(w.shape));
  bool hasLayer = w.source.find("{layer}") != std::string::npos;
  bool hasExpert = w.source.find("{expert}") != std::string::npos;
  if (hasLayer != w.numLayers.has_value())
    fail(field + ".source", w.numLayers
                                ? "a layer-stacked weight needs {layer} in '" +
                                      w.source + "'"
                                : "'" + w.source +
                                      "' has {layer} but layers is null");
  if (hasExpert != w.numExperts.has_value())
    fail(field + ".source", w.numExperts
                                ? "an expert-stacked weight needs {expert} "
                                  "in '" + w.source + "'"
                                : "'" + w.source +
                                      "' has {expert} but experts is null");
  return w;
}

void expectShape(const TensorSpec &spec, const std::string &field,
                 const std::vector<int64_t> &expected) {
  if (spec.shape != expected)
    fail(field + ".shape", "must be " + formatShape(expected) + ", got " +
                               formatShape(spec.shape));
}

Manifest parse(const json &root, const std::string &artifactDir) {
  Manifest m;
  m.artifactDir = artifactDir;
  if (!root.is_object())
    throw ManifestError{"must be a JSON object, got " + jsonKind(root)};
  std::string format = stringField(root, "format", "");
  if (format != "dsv3-artifact")
    fail("format", "must be \"dsv3-artifact\", got \"" + format + "\"");
  int64_t version = intField(root, "version", "");
  if (version != 1)
    fail("version", "this runtime reads version 1, got " +
                        std::to_string(version));

  m.library = stringField(root, "library", "");
  // No control characters either: the name is quoted in later errors.
  if (m.library.empty() || m.library.find('/') != std::string::npos ||
      escapeControlChars(m.library) != m.library)
    fail("library", "must be a file name inside the artifact directory, got "
                    "\"" + m.library + "\"");

  const json &target = objectField(root, "target", "");
  m.target.kind = stringField(target, "kind", "target");
  if (m.target.kind != "cpu" && m.target.kind != "cuda")
    fail("target.kind", "must be \"cpu\" or \"cuda\", got \"" +
                            m.target.kind + "\"");
  if (m.target.kind == "cuda")
    m.target.chip = stringField(target, "chip", "target");
  m.target.triple = stringField(target, "triple", "target");
  if (target.contains("cpu"))
    m.target.cpu = stringField(target, "cpu", "target");
  if (target.contains("features")) {
    const json &features = arrayField(target, "features", "target");
    for (size_t i = 0; i < features.size(); ++i) {
      if (!features[i].is_string())
        fail("target.features[" + std::to_string(i) + "]",
             "must be a string, got " + jsonKind(features[i]));
      m.target.features.push_back(features[i].get<std::string>());
    }
  }

  const json &config = objectField(root, "config", "");
  ConfigParseResult parsed = parseModelConfig(config.dump(), "config");
  if (!parsed)
    throw ManifestError{parsed.error};
  m.config = *parsed.config;

  const json &options = objectField(root, "options", "");
  m.maxBatch = intField(options, "max_batch", "options");
  m.maxSeqLen = intField(options, "max_seq_len", "options");
  if (m.maxBatch < 1)
    fail("options.max_batch", "must be >= 1, got " +
                                  std::to_string(m.maxBatch));
  if (m.maxSeqLen < 1)
    fail("options.max_seq_len", "must be >= 1, got " +
                                    std::to_string(m.maxSeqLen));
  if (options.contains("kv_cache"))
    m.kvCacheLayout = stringField(options, "kv_cache", "options");
  if (options.contains("prefill_as_decode_below")) {
    m.prefillAsDecodeBelow =
        intField(options, "prefill_as_decode_below", "options");
    if (m.prefillAsDecodeBelow < 0)
      fail("options.prefill_as_decode_below",
           "must be >= 0, got " + std::to_string(m.prefillAsDecodeBelow));
  }

  const json &entries = objectField(root, "entry_points", "");
  auto entry = [&](const char *name, int64_t seqLen) {
    std::string field = std::string("entry_points.") + name;
    const json &e = objectField(entries, name, "entry_points");
    EntryPointSpec spec;
    spec.symbol = stringField(e, "symbol", field);
    if (spec.symbol.empty())
      fail(field + ".symbol", "must not be empty");
    spec.seqLen = intField(e, "seq_len", field);
    if (spec.seqLen != seqLen)
      fail(field + ".seq_len", "this runtime calls " + std::string(name) +
                                   " with seq_len " + std::to_string(seqLen) +
                                   ", got " + std::to_string(spec.seqLen));
    return spec;
  };
  m.prefill = entry("prefill", kDynamic);
  m.decode = entry("decode", 1);

  // Inputs: tokens, positions, kv_cache (matched by name; passed in manifest
  // order).
  const json &inputs = arrayField(root, "inputs", "");
  std::set<std::string> seen;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string field = "inputs[" + std::to_string(i) + "]";
    TensorSpec spec = tensorSpec(inputs[i], field, /*allowDynamic=*/true);
    if (!seen.insert(spec.name).second)
      fail(field + ".name", "duplicate input '" + spec.name + "'");
    if (spec.name == "tokens" || spec.name == "positions") {
      if (spec.dtype != ElementType::I32 && spec.dtype != ElementType::I64)
        fail(field + ".dtype", "must be i32 or i64, got " +
                                   std::string(elementTypeName(spec.dtype)));
      expectShape(spec, field, {m.maxBatch, kDynamic});
      (spec.name == "tokens" ? m.tokensInput : m.positionsInput) = i;
    } else if (spec.name == "kv_cache") {
      // i8: the packed FP8 latent layout (bytes per token as its width).
      if (spec.dtype != ElementType::F32 && spec.dtype != ElementType::BF16 &&
          spec.dtype != ElementType::F16 && spec.dtype != ElementType::I8)
        fail(field + ".dtype", "must be f32, bf16, f16 or i8, got " +
                                   std::string(elementTypeName(spec.dtype)));
      for (int64_t d : spec.shape)
        if (d == kDynamic)
          fail(field + ".shape", "must be static, got " +
                                     formatShape(spec.shape));
      if (spec.shape.size() != 4 ||
          spec.shape[0] != m.config.numHiddenLayers ||
          spec.shape[1] != m.maxBatch || spec.shape[2] != m.maxSeqLen)
        fail(field + ".shape",
             "must be [layers, max_batch, max_seq_len, width] = [" +
                 std::to_string(m.config.numHiddenLayers) + ", " +
                 std::to_string(m.maxBatch) + ", " +
                 std::to_string(m.maxSeqLen) + ", width], got " +
                 formatShape(spec.shape));
      m.cacheInput = i;
    } else {
      fail(field + ".name", "unknown input '" + spec.name +
                                "' (this runtime provides tokens, positions "
                                "and kv_cache)");
    }
    m.inputs.push_back(std::move(spec));
  }
  for (const char *name : {"tokens", "positions", "kv_cache"})
    if (!seen.count(name))
      fail("inputs", std::string("no input named '") + name + "'");

  const json &weights = arrayField(root, "weights", "");
  std::set<std::string> roles;
  for (size_t i = 0; i < weights.size(); ++i) {
    std::string field = "weights[" + std::to_string(i) + "]";
    WeightSpec w = weightSpec(weights[i], field, m.config);
    if (!roles.insert(w.role).second)
      fail(field + ".role", "duplicate weight role '" + w.role + "'");
    m.weights.push_back(std::move(w));
  }

  // Prepared weights and the entry that computes them.
  std::set<std::string> preparedNames;
  if (root.contains("prepared") && !root["prepared"].is_null()) {
    const json &prepared = arrayField(root, "prepared", "");
    for (size_t i = 0; i < prepared.size(); ++i) {
      std::string field = "prepared[" + std::to_string(i) + "]";
      TensorSpec spec = tensorSpec(prepared[i], field, /*allowDynamic=*/false);
      expectWeightDType(spec.dtype, field);
      if (roles.count(spec.name) || !preparedNames.insert(spec.name).second)
        fail(field + ".name", "duplicate weight role '" + spec.name + "'");
      m.prepared.push_back(std::move(spec));
    }
  }
  auto roleList = [&](const json &object, const char *name,
                      const std::string &field) {
    std::vector<std::string> list;
    const json &array = arrayField(object, name, field);
    for (size_t i = 0; i < array.size(); ++i) {
      if (!array[i].is_string())
        fail(field + "." + name + "[" + std::to_string(i) + "]",
             "must be a string, got " + jsonKind(array[i]));
      list.push_back(array[i].get<std::string>());
    }
    return list;
  };
  if (entries.contains("prepare") && !entries["prepare"].is_null()) {
    const json &e = objectField(entries, "prepare", "entry_points");
    PrepareSpec prepare;
    prepare.symbol = stringField(e, "symbol", "entry_points.prepare");
    if (prepare.symbol.empty())
      fail("entry_points.prepare.symbol", "must not be empty");
    prepare.weights = roleList(e, "weights", "entry_points.prepare");
    prepare.results = roleList(e, "results", "entry_points.prepare");
    for (const std::string &role : prepare.weights)
      if (!roles.count(role))
        fail("entry_points.prepare.weights",
             "'" + role + "' is not a checkpoint weight of \"weights\"");
    std::vector<std::string> names;
    for (const TensorSpec &spec : m.prepared)
      names.push_back(spec.name);
    if (prepare.results != names)
      fail("entry_points.prepare.results",
           "must name the \"prepared\" weights in their order");
    m.prepare = std::move(prepare);
  } else if (!m.prepared.empty()) {
    fail("entry_points.prepare",
         "\"prepared\" weights need a prepare entry point");
  }
  // The weight arguments of prefill and decode (default: every checkpoint
  // weight in manifest order).
  std::vector<std::string> forwardLists[2];
  for (int k = 0; k < 2; ++k) {
    const char *name = k == 0 ? "prefill" : "decode";
    const json &e = objectField(entries, name, "entry_points");
    if (e.contains("weights")) {
      forwardLists[k] =
          roleList(e, "weights", std::string("entry_points.") + name);
    } else {
      for (const WeightSpec &w : m.weights)
        forwardLists[k].push_back(w.role);
    }
    for (const std::string &role : forwardLists[k])
      if (!roles.count(role) && !preparedNames.count(role))
        fail(std::string("entry_points.") + name + ".weights",
             "'" + role + "' is neither in \"weights\" nor in \"prepared\"");
  }
  if (forwardLists[0] != forwardLists[1])
    fail("entry_points.decode.weights",
         "must equal entry_points.prefill.weights (the entries share one "
         "argument list)");
  m.forwardWeights = std::move(forwardLists[0]);

  const json &outputs = arrayField(root, "outputs", "");
  if (outputs.size() != 1)
    fail("outputs", "must hold exactly one output (logits), got " +
                        std::to_string(outputs.size()));
  TensorSpec logits = tensorSpec(outputs[0], "outputs[0]", false);
  if (logits.name != "logits")
    fail("outputs[0].name", "must be \"logits\", got \"" + logits.name + "\"");
  if (logits.dtype != ElementType::F32)
    fail("outputs[0].dtype", "must be f32, got " +
                                 std::string(elementTypeName(logits.dtype)));
  expectShape(logits, "outputs[0]", {m.maxBatch, m.config.vocabSize});
  m.outputs.push_back(std::move(logits));

  if (root.contains("speculative") && !root["speculative"].is_null()) {
    const json &spec = objectField(root, "speculative", "");
    SpeculativeSpec sp;
    std::string method = stringField(spec, "method", "speculative");
    if (method != "mtp")
      fail("speculative.method", "must be \"mtp\", got \"" + method + "\"");
    for (auto [name, target, list] :
         {std::make_tuple("verify", &sp.verify, &sp.verifyWeights),
          std::make_tuple("draft", &sp.draft, &sp.draftWeights)}) {
      *target = entry(name, kDynamic);
      const json &e = objectField(entries, name, "entry_points");
      *list = roleList(e, "weights", std::string("entry_points.") + name);
      for (const std::string &role : *list)
        if (!roles.count(role) && !preparedNames.count(role))
          fail(std::string("entry_points.") + name + ".weights",
               "'" + role + "' is neither in \"weights\" nor in \"prepared\"");
    }
    auto tensor = [&](const char *name, bool dynamic) {
      std::string field = std::string("speculative.") + name;
      const json &t = objectField(spec, name, "speculative");
      json named = t;
      named["name"] = name;
      return tensorSpec(named, field, dynamic);
    };
    sp.hidden = tensor("hidden", true);
    if (sp.hidden.dtype != ElementType::F32)
      fail("speculative.hidden.dtype", "must be f32");
    expectShape(sp.hidden, "speculative.hidden",
                {m.maxBatch, kDynamic, m.config.hiddenSize});
    sp.mtpCache = tensor("mtp_cache", false);
    const TensorSpec &cache = m.inputs[m.cacheInput];
    if (sp.mtpCache.dtype != cache.dtype || sp.mtpCache.shape.size() != 4 ||
        sp.mtpCache.shape[0] != 1 ||
        !std::equal(cache.shape.begin() + 1, cache.shape.end(),
                    sp.mtpCache.shape.begin() + 1))
      fail("speculative.mtp_cache",
           "must be one layer of the kv_cache input (same dtype and [1, "
           "batch, positions, width])");
    m.speculative = std::move(sp);
  }
  return m;
}

} // namespace

ManifestResult parseManifest(const std::string &jsonText,
                             const std::string &artifactDir,
                             const std::string &sourceName) {
  ManifestResult result;
  try {
    json root;
    // Nesting first: dumping the config of a deeply nested manifest would
    // overflow the stack (dsv3/Model/JsonLimits.h).
    std::string error = checkJsonNesting(jsonText);
    if (error.empty())
      error = detail::parseJson(jsonText.data(),
                                jsonText.data() + jsonText.size(), root);
    if (!error.empty()) {
      result.error = sourceName + ": invalid JSON: " + error;
      return result;
    }
    result.manifest = parse(root, artifactDir);
    result.manifest->path = sourceName;
  } catch (const ManifestError &e) {
    result.error = sourceName + ": " + e.message;
  } catch (const std::exception &e) {
    result.error = sourceName + ": " + e.what();
  } catch (...) {
    result.error = sourceName + ": unknown error";
  }
  // Names quoted from the manifest may hold control characters.
  result.error = escapeControlChars(result.error);
  return result;
}

std::string checkLibraryFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    return path + ": cannot open the artifact's library: " +
           detail::errnoMessage(errno);
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  auto read = [&](uint64_t offset, void *out, size_t bytes) {
    in.seekg(static_cast<std::streamoff>(offset));
    return static_cast<bool>(in.read(static_cast<char *>(out), bytes));
  };
  const std::string bad = path + ": the artifact's library is damaged: ";
  // Anything but a 64-bit little-endian ELF file is left to dlopen, which
  // refuses it without mapping anything ("invalid ELF header", ...).
  Elf64_Ehdr header;
  if (size < sizeof(header) || !read(0, &header, sizeof(header)) ||
      std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 ||
      header.e_ident[EI_CLASS] != ELFCLASS64 ||
      header.e_ident[EI_DATA] != ELFDATA2LSB)
    return "";
  if (header.e_phentsize != sizeof(Elf64_Phdr) ||
      header.e_phoff > size ||
      uint64_t(header.e_phnum) * sizeof(Elf64_Phdr) > size - header.e_phoff)
    return bad + "its program headers lie outside the file";
  for (uint16_t i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr ph;
    if (!read(header.e_phoff + i * sizeof(Elf64_Phdr), &ph, sizeof(ph)))
      return bad + "cannot read its program headers";
    if ((ph.p_type == PT_LOAD || ph.p_type == PT_DYNAMIC) &&
        (ph.p_offset > size || ph.p_filesz > size - ph.p_offset))
      return bad + "segment " + std::to_string(i) + " ends at byte " +
             std::to_string(ph.p_offset + ph.p_filesz) + " of a " +
             std::to_string(size) + "-byte file (truncated?)";
  }
  return "";
}

ManifestResult loadManifest(const std::string &artifactDir) {
  std::string path = artifactDir + "/manifest.json";
  std::string text;
  std::string error = detail::readWholeFile(path, text);
  if (!error.empty()) {
    if (!isDirectory(artifactDir))
      error = artifactDir + ": artifact directory does not exist";
    ManifestResult result;
    result.error = error;
    return result;
  }
  return parseManifest(text, artifactDir, path);
}

} // namespace runtime
} // namespace dsv3
