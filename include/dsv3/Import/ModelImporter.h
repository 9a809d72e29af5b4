//===- ModelImporter.h - ModelConfig -> dsv3 module -------------*- C++ -*-===//
//
// Builds the dsv3 module of a whole forward pass from a validated model
// configuration. The module is depth-independent: layers of one kind share
// one loop body over weights stacked along a leading layer dimension, so its
// size does not grow with num_hidden_layers (docs/architecture.md).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_IMPORT_MODELIMPORTER_H
#define DSV3_IMPORT_MODELIMPORTER_H

#include "dsv3/Model/ModelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace mlir {
class MLIRContext;

namespace dsv3 {

/// How the KV cache of each layer is laid out (see dsv3.mla).
enum class CacheLayout {
  /// kv_norm(c) and roped k_pe: kv_lora_rank + qk_rope_head_dim per token.
  Latent,
  /// Per-head K (nope ++ rope) and V: heads * (nope + rope + v) per token.
  Expanded,
};

/// Element type of the non-FP8 weights (norms, embeddings, head, router, and
/// all projections of a non-FP8 checkpoint).
enum class WeightPrecision { F32, BF16, F16 };

/// Element type of the KV cache: attention reads it in this type and widens
/// in registers; new entries are rounded to it when written. FP8 is the
/// layout packed as FlashMLA's FP8 cache (i8 bytes: e4m3 codes, f32 tile
/// scales, the latent layout's rope key in bf16; see dsv3.mla).
enum class KvCacheDType { F32, BF16, FP8 };

struct ImportOptions {
  int64_t maxBatch = 1;
  /// Positions the KV cache holds; 0 means min(max_position_embeddings, 4096).
  int64_t maxSeqLen = 0;
  /// The import level is the naive form; dsv3-fuse-latent-projection
  /// switches a module to the latent cache (dsv3-compile does by default).
  CacheLayout cacheLayout = CacheLayout::Expanded;
  WeightPrecision weightPrecision = WeightPrecision::BF16;
  KvCacheDType kvCacheDType = KvCacheDType::BF16;
  /// Also compile the MTP module (layer num_hidden_layers of the checkpoint)
  /// for speculative decoding: the @verify and @draft entries.
  bool mtp = false;
};

struct ImportResult {
  OwningOpRef<ModuleOp> module;
  std::string error; // one line when `module` is null
};

/// Builds the module. Entry points (all with llvm.emit_c_interface):
///   @prefill(tokens [B, ?] i32, positions [B, ?] i64, kv_cache, weights...)
///   @decode (tokens [B, 1] i32, positions [B, 1] i64, kv_cache, weights...)
/// each returning (last-position logits [B, vocab] f32, updated kv_cache).
/// With `mtp`, also
///   @verify(tokens, positions, kv_cache, weights...) -> (logits [B, ?, vocab],
///           normalised hidden states [B, ?, hidden], kv_cache)
///   @draft (tokens [B, ?], positions [B, ?], hidden [B, ?, hidden] f32,
///           mtp_cache [1, B, max_seq_len, width], MTP weights...)
///       -> (logits [B, vocab], last hidden state [B, hidden], mtp_cache)
/// The KV cache is [layers, B, max_seq_len, width] of kvCacheDType. Every weight
/// argument carries `dsv3.weight` (its role) and `dsv3.source` (the HF tensor
/// name pattern with {layer} and {expert} placeholders).
ImportResult importModel(MLIRContext &context, const ::dsv3::ModelConfig &config,
                         const ImportOptions &options);

} // namespace dsv3
} // namespace mlir

#endif // DSV3_IMPORT_MODELIMPORTER_H
