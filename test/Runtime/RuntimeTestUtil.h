//===- RuntimeTestUtil.h - Fixtures for the runtime unit tests --*- C++ -*-===//
//
// Writes small artifacts and checkpoints to a temp directory: a config.json,
// a safetensors file with deterministic bytes per tensor, and a manifest
// (nlohmann::json, editable by each test) whose library is the test double
// libdsv3-fake-model.so (Inputs/fake_model.c).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TEST_RUNTIME_RUNTIMETESTUTIL_H
#define DSV3_TEST_RUNTIME_RUNTIMETESTUTIL_H

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace dsv3test {

using json = nlohmann::json;

/// A fresh directory under TMPDIR, removed at destruction.
class TempDir {
public:
  TempDir() {
    const char *base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") +
                          "/dsv3rt-test-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (!mkdtemp(buffer.data()))
      ADD_FAILURE() << "mkdtemp failed";
    path_ = buffer.data();
  }
  ~TempDir() {
    std::string command = "rm -rf '" + path_ + "'";
    if (std::system(command.c_str()) != 0)
      ADD_FAILURE() << "cannot remove " << path_;
  }
  const std::string &path() const { return path_; }
  std::string operator/(const std::string &name) const {
    return path_ + "/" + name;
  }

private:
  std::string path_;
};

inline void writeFile(const std::string &path, const std::string &data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline void makeDir(const std::string &path) {
  std::string command = "mkdir -p '" + path + "'";
  ASSERT_EQ(std::system(command.c_str()), 0);
}

/// A small, valid DeepSeek-V3-style config: 3 layers (layer 0 dense, 1-2
/// MoE with 4 experts), vocab 32, eos 1.
inline json smallConfig() {
  return json::parse(R"({
    "model_type": "deepseek_v3", "vocab_size": 32, "hidden_size": 16,
    "intermediate_size": 32, "moe_intermediate_size": 8,
    "num_hidden_layers": 3, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "num_attention_heads": 2, "num_key_value_heads": 2,
    "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
    "n_group": 2, "topk_group": 1, "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid", "topk_method": "noaux_tc",
    "norm_topk_prob": true, "q_lora_rank": 8, "kv_lora_rank": 8,
    "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 4,
    "rms_norm_eps": 1e-6, "rope_theta": 10000, "rope_scaling": null,
    "max_position_embeddings": 4096, "tie_word_embeddings": false,
    "bos_token_id": 0, "eos_token_id": 1, "hidden_act": "silu"
  })");
}

/// One tensor of a test checkpoint.
struct TestTensor {
  std::string name;
  std::string dtype; // safetensors spelling
  std::vector<int64_t> shape;
  std::string bytes; // exactly shape x dtype size

  static size_t dtypeSize(const std::string &dtype) {
    if (dtype == "F32" || dtype == "I32")
      return 4;
    if (dtype == "BF16" || dtype == "F16")
      return 2;
    if (dtype == "I64")
      return 8;
    return 1; // F8_E4M3, U8
  }
  /// Deterministic content: byte k = (seed * 31 + k * 7) mod 251.
  static TestTensor make(const std::string &name, const std::string &dtype,
                         std::vector<int64_t> shape, unsigned seed) {
    size_t n = dtypeSize(dtype);
    for (int64_t d : shape)
      n *= static_cast<size_t>(d);
    std::string bytes(n, '\0');
    for (size_t k = 0; k < n; ++k)
      bytes[k] = static_cast<char>((seed * 31u + k * 7u) % 251u);
    return {name, dtype, std::move(shape), std::move(bytes)};
  }
};

/// Writes tensors in the given order, the data section starting 8-aligned
/// (so alignment inside it is decided by the tensors before each one).
inline void writeSafetensors(const std::string &path,
                             const std::vector<TestTensor> &tensors) {
  json header = json::object();
  size_t offset = 0;
  for (const TestTensor &t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i)
    file[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  file += text;
  for (const TestTensor &t : tensors)
    file += t.bytes;
  writeFile(path, file);
}

/// The manifest's description of one weight.
inline json weightEntry(const std::string &role, const std::string &source,
                        const std::string &dtype, std::vector<int64_t> shape,
                        json layers = nullptr, json experts = nullptr) {
  return {{"role", role},       {"source", source},   {"dtype", dtype},
          {"shape", shape},     {"layers", layers},   {"experts", experts}};
}

/// A manifest for `config` with the given weights and limits.
inline json makeManifest(const json &config, const json &weights,
                         int64_t maxBatch = 2, int64_t maxSeqLen = 16) {
  int64_t layers = config["num_hidden_layers"];
  int64_t width = config["kv_lora_rank"].get<int64_t>() +
                  config["qk_rope_head_dim"].get<int64_t>();
  return {
      {"format", "dsv3-artifact"},
      {"version", 1},
      {"library", "libdsv3model.so"},
      {"target",
       {{"kind", "cpu"},
        {"triple", "x86_64-unknown-linux-gnu"},
        {"cpu", "generic"},
        {"features", {"sse2"}}}},
      {"config", config},
      {"options",
       {{"max_batch", maxBatch},
        {"max_seq_len", maxSeqLen},
        {"kv_cache", "latent"}}},
      {"entry_points",
       {{"prefill", {{"symbol", "dsv3_prefill"}, {"seq_len", -1}}},
        {"decode", {{"symbol", "dsv3_decode"}, {"seq_len", 1}}}}},
      {"inputs",
       {{{"name", "tokens"}, {"dtype", "i32"}, {"shape", {maxBatch, -1}}},
        {{"name", "positions"}, {"dtype", "i64"}, {"shape", {maxBatch, -1}}},
        {{"name", "kv_cache"},
         {"dtype", "f32"},
         {"shape", {layers, maxBatch, maxSeqLen, width}}}}},
      {"weights", weights},
      {"outputs",
       {{{"name", "logits"},
         {"dtype", "f32"},
         {"shape", {maxBatch, config["vocab_size"]}}}}},
  };
}

/// Copies the test-double library into `artifactDir` and writes `manifest`.
inline void writeArtifact(const std::string &artifactDir,
                          const json &manifest) {
  makeDir(artifactDir);
  // Copy then rename: a new inode, never an in-place rewrite of a library
  // that may still be mapped.
  std::string lib = artifactDir + "/libdsv3model.so";
  std::string command = std::string("cp '") + DSV3_FAKE_MODEL_LIB + "' '" +
                        lib + ".tmp' && mv -f '" + lib + ".tmp' '" + lib + "'";
  ASSERT_EQ(std::system(command.c_str()), 0);
  writeFile(artifactDir + "/manifest.json", manifest.dump(1));
}

} // namespace dsv3test

#endif // DSV3_TEST_RUNTIME_RUNTIMETESTUTIL_H
