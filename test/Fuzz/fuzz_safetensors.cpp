//===- fuzz_safetensors.cpp - libFuzzer harness of Checkpoint::open -------===//
//
// The input is one or more files (FuzzUtil.h's separator between them):
//  - one file: written as DIR/model.safetensors and opened through the
//    directory (the single-file path);
//  - several: the first is DIR/model.safetensors.index.json, the others
//    DIR/model-0000<i>-of-0000<n>.safetensors, i = 1..n, the names the seeds'
//    indexes use; DIR is opened (the sharded path).
// An opened checkpoint is then checked against its promises: every tensor's
// bytes lie inside its file (each is read: a pointer past the mapping
// faults), its byte count is shape x dtype size, names are sorted and
// unique; it is validated against the tiny-v3 config and scanned for NaN
// like the runtime does. A failure must be one error line.
//
//===----------------------------------------------------------------------===//

#include "FuzzUtil.h"

#include "dsv3/Model/Checkpoint.h"
#include "dsv3/Model/ModelConfig.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace dsv3;

namespace {

// test/data/golden/tiny-v3/config.json, the config the seeds were made for.
const char *const kTinyConfig = R"({
 "model_type": "deepseek_v3", "vocab_size": 512, "hidden_size": 128,
 "intermediate_size": 256, "moe_intermediate_size": 32,
 "num_hidden_layers": 3, "first_k_dense_replace": 1,
 "num_attention_heads": 4, "n_routed_experts": 8, "n_shared_experts": 1,
 "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2,
 "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
 "topk_method": "noaux_tc", "norm_topk_prob": true, "q_lora_rank": 64,
 "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
 "v_head_dim": 16, "max_position_embeddings": 163840})";

[[noreturn]] void fail(const char *what, const std::string &detail) {
  std::fprintf(stderr, "dsv3 fuzz_safetensors: %s: %s\n", what,
               detail.c_str());
  std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const fuzz::ScratchDir dir;
  static const ModelConfig config = *parseModelConfig(kTinyConfig).config;
  dir.clear();

  std::vector<std::string_view> files = fuzz::splitFiles(
      std::string_view(reinterpret_cast<const char *>(data), size));
  if (files.size() == 1) {
    dir.write("model.safetensors", files[0]);
  } else {
    dir.write("model.safetensors.index.json", files[0]);
    size_t shards = files.size() - 1;
    for (size_t i = 1; i <= shards; ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i,
                    shards);
      dir.write(name, files[i]);
    }
  }

  CheckpointOpenResult result = Checkpoint::open(dir.path());
  if (!result) {
    fuzz::checkErrorLine(result.error);
    return 0;
  }
  const Checkpoint &checkpoint = *result.checkpoint;
  const std::vector<TensorInfo> &tensors = checkpoint.tensors();
  uint64_t checksum = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo &t = tensors[i];
    if (i > 0 && !(tensors[i - 1].name < t.name))
      fail("tensors are not sorted and unique", t.name);
    if (checkpoint.find(t.name) != &t)
      fail("find() does not return the tensor", t.name);
    if (static_cast<uint64_t>(t.numElements()) * dtypeSize(t.dtype) !=
        t.numBytes)
      fail("byte count is not shape x dtype size", t.name);
    // Every byte is readable: a range past the mapping faults here.
    for (size_t b = 0; b < t.numBytes; ++b)
      checksum += t.data[b];
    int64_t bad = findNonFinite(t.dtype, t.data, t.numBytes);
    if (bad >= 0)
      fuzz::checkErrorLine(nonFiniteWeightError(t, bad));
    std::vector<uint8_t> copy(t.numBytes);
    if (copyAndFindNonFinite(t.dtype, copy.data(), t.data, t.numBytes) != bad)
      fail("copyAndFindNonFinite disagrees with findNonFinite", t.name);
  }
  std::string problem = validateCheckpoint(checkpoint, config);
  if (!problem.empty())
    fuzz::checkErrorLine(problem);
  (void)unexpectedTensors(checkpoint, config);
  // Keep the reads from being optimised away.
  if (checksum == 0xdeadbeefdeadbeefull)
    std::fprintf(stderr, "%llu\n", static_cast<unsigned long long>(checksum));
  return 0;
}
