//===- TestConfigs.h - config.json texts used by the unit tests -*- C++ -*-===//
//
// The HF config.json of deepseek-ai/DeepSeek-V3 (verbatim, spec §1.2) and the
// configs of the three golden test models (test/data/golden/<case>/).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TEST_MODEL_TESTCONFIGS_H
#define DSV3_TEST_MODEL_TESTCONFIGS_H

namespace dsv3::test {

inline constexpr const char *kConfig671B = R"json({"architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
 "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config", "AutoModel": "modeling_deepseek.DeepseekV3Model",
              "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
 "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3, "hidden_act": "silu",
 "hidden_size": 7168, "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512,
 "max_position_embeddings": 163840, "model_type": "deepseek_v3", "moe_intermediate_size": 2048, "moe_layer_freq": 1,
 "n_group": 8, "n_routed_experts": 256, "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 128,
 "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128, "num_nextn_predict_layers": 1,
 "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
 "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]},
 "rms_norm_eps": 1e-06,
 "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                  "original_max_position_embeddings": 4096, "type": "yarn"},
 "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "tie_word_embeddings": false,
 "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "transformers_version": "4.46.3",
 "use_cache": true, "v_head_dim": 128, "vocab_size": 129280})json";

// tiny-v3
inline constexpr const char *kConfigTinyV3 = R"json({
 "architectures": [
  "DeepseekV3ForCausalLM"
 ],
 "model_type": "deepseek_v3",
 "vocab_size": 512,
 "hidden_size": 128,
 "intermediate_size": 256,
 "moe_intermediate_size": 32,
 "num_hidden_layers": 3,
 "first_k_dense_replace": 1,
 "num_attention_heads": 4,
 "num_key_value_heads": 4,
 "n_routed_experts": 8,
 "n_shared_experts": 1,
 "num_experts_per_tok": 2,
 "n_group": 4,
 "topk_group": 2,
 "routed_scaling_factor": 2.5,
 "scoring_func": "sigmoid",
 "topk_method": "noaux_tc",
 "norm_topk_prob": true,
 "q_lora_rank": 64,
 "kv_lora_rank": 32,
 "qk_nope_head_dim": 16,
 "qk_rope_head_dim": 8,
 "v_head_dim": 16,
 "rms_norm_eps": 1e-06,
 "rope_theta": 10000,
 "rope_scaling": {
  "type": "yarn",
  "factor": 40,
  "original_max_position_embeddings": 4096,
  "beta_fast": 32,
  "beta_slow": 1,
  "mscale": 1.0,
  "mscale_all_dim": 1.0
 },
 "max_position_embeddings": 163840,
 "tie_word_embeddings": false,
 "bos_token_id": 0,
 "eos_token_id": 1,
 "hidden_act": "silu"
})json";

// tiny-v2lite
inline constexpr const char *kConfigTinyV2Lite = R"json({
 "architectures": [
  "DeepseekV3ForCausalLM"
 ],
 "model_type": "deepseek_v3",
 "vocab_size": 500,
 "hidden_size": 96,
 "intermediate_size": 192,
 "moe_intermediate_size": 24,
 "num_hidden_layers": 3,
 "first_k_dense_replace": 1,
 "num_attention_heads": 3,
 "num_key_value_heads": 3,
 "n_routed_experts": 6,
 "n_shared_experts": 2,
 "num_experts_per_tok": 2,
 "n_group": 1,
 "topk_group": 1,
 "routed_scaling_factor": 1.0,
 "scoring_func": "softmax",
 "topk_method": "greedy",
 "norm_topk_prob": false,
 "q_lora_rank": null,
 "kv_lora_rank": 32,
 "qk_nope_head_dim": 16,
 "qk_rope_head_dim": 8,
 "v_head_dim": 16,
 "rms_norm_eps": 1e-06,
 "rope_theta": 10000,
 "rope_scaling": null,
 "max_position_embeddings": 4096,
 "tie_word_embeddings": false,
 "bos_token_id": 0,
 "eos_token_id": 1,
 "hidden_act": "silu"
})json";

// tiny-v3-fp8
inline constexpr const char *kConfigTinyV3Fp8 = R"json({
 "architectures": [
  "DeepseekV3ForCausalLM"
 ],
 "model_type": "deepseek_v3",
 "vocab_size": 640,
 "hidden_size": 320,
 "intermediate_size": 448,
 "moe_intermediate_size": 96,
 "num_hidden_layers": 3,
 "first_k_dense_replace": 1,
 "num_attention_heads": 4,
 "num_key_value_heads": 4,
 "n_routed_experts": 8,
 "n_shared_experts": 1,
 "num_experts_per_tok": 2,
 "n_group": 2,
 "topk_group": 1,
 "routed_scaling_factor": 2.5,
 "scoring_func": "sigmoid",
 "topk_method": "noaux_tc",
 "norm_topk_prob": true,
 "q_lora_rank": 160,
 "kv_lora_rank": 96,
 "qk_nope_head_dim": 32,
 "qk_rope_head_dim": 16,
 "v_head_dim": 32,
 "rms_norm_eps": 1e-06,
 "rope_theta": 10000,
 "rope_scaling": {
  "type": "yarn",
  "factor": 40,
  "original_max_position_embeddings": 4096,
  "beta_fast": 32,
  "beta_slow": 1,
  "mscale": 1.0,
  "mscale_all_dim": 1.0
 },
 "max_position_embeddings": 163840,
 "tie_word_embeddings": false,
 "bos_token_id": 0,
 "eos_token_id": 1,
 "hidden_act": "silu",
 "quantization_config": {
  "activation_scheme": "dynamic",
  "fmt": "e4m3",
  "quant_method": "fp8",
  "weight_block_size": [
   128,
   128
  ]
 }
})json";

} // namespace dsv3::test

#endif // DSV3_TEST_MODEL_TESTCONFIGS_H
