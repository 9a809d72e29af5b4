"""Random DeepSeek-V3-architecture checkpoints in the Hugging Face layout (config.json + safetensors).

Every tensor is drawn from its own RNG stream seeded by (seed, crc32(name)), so a tensor's values do not depend
on the shard layout or on which other tensors exist; checkpoints are written one tensor at a time (the
bench-450m preset never holds more than one tensor in memory).

Initialisation (chosen for non-degenerate logits): projections N(0, 1/fan_in); embeddings N(0, 1); RMSNorm
weights 1 + N(0, 0.1^2); router N(0, 1/D); e_score_correction_bias N(0, 0.05^2); lm_head N(0, 4/D).

Storage dtypes: f32 -> every tensor F32.  bf16 -> every tensor BF16 except the router bias (F32).  fp8 -> the
attention/MLP/expert projections are F8_E4M3 with F32 `<name>_scale_inv` blocks of 128x128 (scale_inv =
amax(block)/448, codes = RNE(w / scale_inv)), everything else BF16, router bias F32 (spec §7.1).

CLI: python3 -m dsv3.generate_model (--config CFG.json | --preset NAME) --out DIR --seed S
                                    --dtype f32|bf16|fp8 [--shards N]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import ModelConfig, config_from_dict
from .safetensors_io import FP8_E4M3_MAX, f32_to_fp8_e4m3, write_checkpoint_tensors

DTYPES = ("f32", "bf16", "fp8")

_YARN_V3 = {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
            "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}

_COMMON = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_act": "silu",
           "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1, "moe_layer_freq": 1,
           "rms_norm_eps": 1e-6, "rope_theta": 10000, "attention_bias": False, "attention_dropout": 0.0}

PRESETS: Dict[str, Dict[str, Any]] = {
    # Small and fast: 3 layers (1 dense), V3-style routing, YaRN.
    "tiny": dict(_COMMON, vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                 num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4,
                 n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
                 routed_scaling_factor=2.5, scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True,
                 q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                 rope_scaling=dict(_YARN_V3), max_position_embeddings=163840, num_nextn_predict_layers=0),
    # ~455M parameters: benchmark model with V3 structure at reduced width.
    "bench-450m": dict(_COMMON, vocab_size=32000, hidden_size=1024, intermediate_size=2816,
                       moe_intermediate_size=256, num_hidden_layers=8, first_k_dense_replace=1,
                       num_attention_heads=16, num_key_value_heads=16, n_routed_experts=64, n_shared_experts=1,
                       num_experts_per_tok=6, n_group=8, topk_group=3, routed_scaling_factor=2.5,
                       scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True, q_lora_rank=384,
                       kv_lora_rank=256, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64,
                       rope_scaling=dict(_YARN_V3), max_position_embeddings=163840, num_nextn_predict_layers=0),
    # The real HF config (spec §1.2); config only, far too big to generate.
    "deepseek-v3-671b": dict(_COMMON, vocab_size=129280, hidden_size=7168, intermediate_size=18432,
                             moe_intermediate_size=2048, num_hidden_layers=61, first_k_dense_replace=3,
                             num_attention_heads=128, num_key_value_heads=128, n_routed_experts=256,
                             n_shared_experts=1, num_experts_per_tok=8, n_group=8, topk_group=4,
                             routed_scaling_factor=2.5, scoring_func="sigmoid", topk_method="noaux_tc",
                             norm_topk_prob=True, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                             qk_rope_head_dim=64, v_head_dim=128, rope_scaling=dict(_YARN_V3),
                             max_position_embeddings=163840, num_nextn_predict_layers=1, ep_size=1,
                             initializer_range=0.02, use_cache=True, torch_dtype="bfloat16",
                             quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3",
                                                  "quant_method": "fp8", "weight_block_size": [128, 128]}),
}
CONFIG_ONLY_PRESETS = {"deepseek-v3-671b"}
# Refuse to materialise more than this many parameters (the 671B model would need ~1.3 TB in bf16).
MAX_GENERATE_PARAMS = 4_000_000_000

FP8_QUANT_CONFIG = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                    "weight_block_size": [128, 128]}

# Suffixes of the projections stored as FP8 in the real checkpoint (spec §7.1).  The router "mlp.gate.weight",
# norms, embeddings, lm_head and the MTP eh_proj / shared_head stay BF16.
_FP8_SUFFIXES = ("q_a_proj.weight", "q_b_proj.weight", "q_proj.weight", "kv_a_proj_with_mqa.weight",
                 "kv_b_proj.weight", "o_proj.weight", "gate_proj.weight", "up_proj.weight", "down_proj.weight")


def preset_config(name: str) -> Dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return copy.deepcopy(PRESETS[name])


# ----------------------------------------------------------------------------------------------------------------
# test matrix
# ----------------------------------------------------------------------------------------------------------------

def _small_base() -> Dict[str, Any]:
    """Tiny V3-style config used as the base of the variant matrix (fast enough for a 2-core CI box)."""
    return dict(_COMMON, vocab_size=96, hidden_size=48, intermediate_size=64, moe_intermediate_size=16,
                num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=2, num_key_value_heads=2,
                n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1,
                routed_scaling_factor=2.5, scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True,
                q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                rope_scaling=dict(_YARN_V3), max_position_embeddings=163840, num_nextn_predict_layers=0)


def variant_configs() -> Dict[str, Dict[str, Any]]:
    """Named small configs covering the feature matrix: {name: {"config": dict, "dtype": "f32"|"bf16"|"fp8"}}."""
    def v(dtype="bf16", **over):
        c = _small_base()
        c.update(over)
        return {"config": c, "dtype": dtype}

    return {
        "base-v3": v(),
        "dense-null-experts": v(n_routed_experts=None, n_shared_experts=None, num_experts_per_tok=None,
                                n_group=None, topk_group=None),
        "dense-first-k": v(first_k_dense_replace=2),
        "no-q-lora": v(q_lora_rank=None),
        "softmax-no-groups": v(scoring_func="softmax", topk_method="greedy", n_group=1, topk_group=1,
                               norm_topk_prob=False, routed_scaling_factor=1.0, n_shared_experts=2,
                               rope_scaling=None, max_position_embeddings=4096),
        "softmax-groups-no-bias": v(scoring_func="softmax", topk_method="group_limited_greedy", n_routed_experts=8,
                                    n_group=4, topk_group=2, num_experts_per_tok=3, norm_topk_prob=False,
                                    routed_scaling_factor=16.0),
        "sigmoid-groups-bias": v(n_routed_experts=8, n_group=4, topk_group=2, num_experts_per_tok=3),
        "no-shared-top1": v(n_shared_experts=0, num_experts_per_tok=1, n_group=1, topk_group=1),
        "moe-layer-freq-2": v(num_hidden_layers=3, first_k_dense_replace=0, moe_layer_freq=2),
        "no-yarn": v(rope_scaling=None, max_position_embeddings=4096),
        "odd-heads": v(num_attention_heads=3, num_key_value_heads=3),
        "v-ne-nope": v(v_head_dim=12, qk_nope_head_dim=8, qk_rope_head_dim=6),
        "with-mtp-layer": v(num_nextn_predict_layers=1),
        # Two 128-column tiles of the packed FP8 latent cache (each with its own scale).
        "wide-latent": v(kv_lora_rank=256),
        "f32": v(dtype="f32"),
        # hidden 144 / intermediate 200 give partial 128x128 edge blocks in both directions.
        "fp8": v(dtype="fp8", hidden_size=144, intermediate_size=200, moe_intermediate_size=136, q_lora_rank=136),
        # q_lora_rank a multiple of 128: dsv3-fuse-latent-projection concatenates the FP8 q_a and kv_a (and their
        # block scales) into one GEMM.
        "fp8-fused-down": v(dtype="fp8", hidden_size=144, intermediate_size=200, moe_intermediate_size=136,
                            q_lora_rank=128),
    }


# ----------------------------------------------------------------------------------------------------------------
# tensor inventory
# ----------------------------------------------------------------------------------------------------------------

def full_config_dict(config: Dict[str, Any], dtype: str) -> Dict[str, Any]:
    """The config.json to write: the caller's keys, every ModelConfig field made explicit (so C++ readers never
    rely on HF defaults), the standard HF boilerplate, and quantization_config iff dtype == fp8."""
    out = dict(_COMMON)
    out.update(copy.deepcopy(config))
    cfg = config_from_dict(out)
    for k, val in cfg.to_dict().items():
        if k not in out:
            out[k] = val
    out.setdefault("num_key_value_heads", out["num_attention_heads"])
    out["torch_dtype"] = "float32" if dtype == "f32" else "bfloat16"
    if dtype == "fp8":
        out["quantization_config"] = copy.deepcopy(FP8_QUANT_CONFIG)
    else:
        out.pop("quantization_config", None)
    config_from_dict(out)  # re-validate what will be written
    return out


def _layer_tensors(cfg: ModelConfig, i: int, moe: bool) -> List[Tuple[str, Tuple[int, ...], str]]:
    """(name, shape, kind) of one decoder layer; kind selects the init."""
    D, H = cfg.hidden_size, cfg.num_attention_heads
    dq, dn, dr, dv, C = cfg.qk_head_dim, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
    p = f"model.layers.{i}."
    t: List[Tuple[str, Tuple[int, ...], str]] = [(p + "input_layernorm.weight", (D,), "norm")]
    a = p + "self_attn."
    if cfg.q_lora_rank is None:
        t.append((a + "q_proj.weight", (H * dq, D), "proj"))
    else:
        Q = cfg.q_lora_rank
        t += [(a + "q_a_proj.weight", (Q, D), "proj"), (a + "q_a_layernorm.weight", (Q,), "norm"),
              (a + "q_b_proj.weight", (H * dq, Q), "proj")]
    t += [(a + "kv_a_proj_with_mqa.weight", (C + dr, D), "proj"), (a + "kv_a_layernorm.weight", (C,), "norm"),
          (a + "kv_b_proj.weight", (H * (dn + dv), C), "proj"), (a + "o_proj.weight", (D, H * dv), "proj"),
          (p + "post_attention_layernorm.weight", (D,), "norm")]
    m = p + "mlp."

    def mlp(prefix: str, inter: int) -> None:
        t.extend([(prefix + "gate_proj.weight", (inter, D), "proj"), (prefix + "up_proj.weight", (inter, D), "proj"),
                  (prefix + "down_proj.weight", (D, inter), "proj")])

    if moe:
        E, I = cfg.n_routed_experts, cfg.moe_intermediate_size
        t.append((m + "gate.weight", (E, D), "router"))
        if cfg.uses_router_bias:
            t.append((m + "gate.e_score_correction_bias", (E,), "bias"))
        for e in range(E):
            mlp(f"{m}experts.{e}.", I)
        if cfg.n_shared_experts:
            mlp(m + "shared_experts.", cfg.n_shared_experts * I)
    else:
        mlp(m, cfg.intermediate_size)
    return t


def tensor_inventory(cfg: ModelConfig) -> List[Tuple[str, Tuple[int, ...], str]]:
    """Every tensor of the checkpoint (without FP8 scales), in file order; MTP layers (model.layers.L.*) last."""
    D, V, L = cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers
    t: List[Tuple[str, Tuple[int, ...], str]] = [("model.embed_tokens.weight", (V, D), "embed")]
    for i in range(L):
        t += _layer_tensors(cfg, i, cfg.is_moe_layer(i))
    t += [("model.norm.weight", (D,), "norm"), ("lm_head.weight", (V, D), "head")]
    for k in range(cfg.num_nextn_predict_layers):
        i = L + k
        p = f"model.layers.{i}."
        t += [(p + "embed_tokens.weight", (V, D), "embed"), (p + "enorm.weight", (D,), "norm"),
              (p + "hnorm.weight", (D,), "norm"), (p + "eh_proj.weight", (D, 2 * D), "proj")]
        # V3's MTP block is a MoE layer when the model has experts.
        t += _layer_tensors(cfg, i, cfg.n_routed_experts > 0)
        t += [(p + "shared_head.norm.weight", (D,), "norm"), (p + "shared_head.head.weight", (V, D), "head")]
    return t


def count_parameters(cfg: ModelConfig, include_mtp: bool = False) -> int:
    """Main-model parameter count (FP8 scales excluded)."""
    L = cfg.num_hidden_layers
    n = 0
    for name, shape, _ in tensor_inventory(cfg):
        parts = name.split(".")
        if not include_mtp and len(parts) > 2 and parts[1] == "layers" and int(parts[2]) >= L:
            continue
        n += math.prod(shape)
    return n


def is_fp8_tensor(name: str) -> bool:
    return name.endswith(_FP8_SUFFIXES)


def _init(name: str, shape: Tuple[int, ...], kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    if kind == "norm":
        return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    if kind == "bias":
        return (0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    if kind == "embed":
        return rng.standard_normal(shape, dtype=np.float32)
    fan_in = shape[-1]
    std = {"proj": 1.0, "router": 1.0, "head": 2.0}[kind] / math.sqrt(fan_in)
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= np.float32(std)
    return x


def quantize_fp8_blocks(w: np.ndarray, block: Sequence[int] = (128, 128)) -> Tuple[np.ndarray, np.ndarray]:
    """Block-wise FP8 quantisation: scale_inv[bi, bj] = amax(block)/448 (f32), codes = RNE(w / scale_inv)
    (README_WEIGHTS.md: edge blocks are treated as zero-padded).  Returns (uint8 codes, f32 scale_inv)."""
    bm, bn = block
    m, n = w.shape
    gm, gn = math.ceil(m / bm), math.ceil(n / bn)
    padded = np.zeros((gm * bm, gn * bn), dtype=np.float32)
    padded[:m, :n] = w
    amax = np.abs(padded.reshape(gm, bm, gn, bn)).max(axis=(1, 3))
    scale_inv = (np.maximum(amax, np.float32(1e-12)) / np.float32(FP8_E4M3_MAX)).astype(np.float32)
    full = np.repeat(np.repeat(scale_inv, bm, axis=0), bn, axis=1)[:m, :n]
    return f32_to_fp8_e4m3(w.astype(np.float32) / full), scale_inv


def _mtp_agreement_weight(cfg: ModelConfig, name: str, shape: Tuple[int, ...], kind: str, seed: int,
                          alpha: float) -> Optional[np.ndarray]:
    """The weights of a checkpoint whose MTP module drafts what the main model predicts (docs/speculative-decoding.md).

    Every block's output projections (attention o_proj, FFN/expert down_proj) are scaled by alpha in the main model
    and zeroed in the MTP block, so a main-model hidden state is emb(t) plus alpha-sized terms and its logits are
    g(t) = lm_head(norm(emb(t))) plus perturbations; the MTP module's eh_proj = [I | 0] with enorm = 1 passes
    norm(emb(t_{i+1})) through its (silent) block, and its head is the main model's norm and head, so it drafts
    g(t_{i+1}): the main model's prediction when alpha = 0, less often as alpha grows. None: the random weight."""
    L, D = cfg.num_hidden_layers, cfg.hidden_size
    parts = name.split(".")
    layer = int(parts[2]) if len(parts) > 2 and parts[1] == "layers" else -1
    mtp = layer >= L
    if name.endswith(("o_proj.weight", "down_proj.weight")) and layer >= 0:
        return np.zeros(shape, np.float32) if mtp else alpha * _init(name, shape, kind, seed)
    if not mtp:
        return None
    p = f"model.layers.{layer}."
    if name == p + "embed_tokens.weight":
        return _init("model.embed_tokens.weight", shape, kind, seed)
    if name == p + "shared_head.head.weight":
        return _init("lm_head.weight", shape, kind, seed)
    if name == p + "shared_head.norm.weight":
        return _init("model.norm.weight", shape, kind, seed)
    if name == p + "enorm.weight":
        return np.ones(shape, np.float32)
    if name == p + "eh_proj.weight":
        return np.concatenate([np.eye(D, dtype=np.float32), np.zeros((D, D), np.float32)], axis=1)
    return None


def generate_checkpoint(config: Dict[str, Any], out_dir: str, seed: int = 0, dtype: str = "bf16",
                        shards: int = 1, max_params: int = MAX_GENERATE_PARAMS,
                        mtp_agreement: Optional[float] = None) -> str:
    """Write config.json and random weights into out_dir; returns out_dir. With mtp_agreement = alpha (and an MTP
    layer), the weights follow _mtp_agreement_weight."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    cfg_dict = full_config_dict(config, dtype)
    cfg = config_from_dict(cfg_dict)
    n_params = count_parameters(cfg, include_mtp=True)
    if n_params > max_params:
        raise ValueError(f"model has {n_params:,} parameters, over the generator limit of {max_params:,} "
                         f"(use it as a config only)")
    inventory = tensor_inventory(cfg)
    block = tuple(cfg.fp8_block_size)
    specs = []
    kinds = {}
    for name, shape, kind in inventory:
        kinds[name] = (shape, kind)
        if dtype == "f32":
            specs.append((name, "F32", shape))
        elif kind == "bias":
            specs.append((name, "F32", shape))
        elif dtype == "fp8" and is_fp8_tensor(name):
            specs.append((name, "F8_E4M3", shape))
            sshape = (math.ceil(shape[0] / block[0]), math.ceil(shape[1] / block[1]))
            specs.append((name + "_scale_inv", "F32", sshape))
        else:
            specs.append((name, "BF16", shape))

    pending_scales: Dict[str, np.ndarray] = {}
    if mtp_agreement is not None and cfg.num_nextn_predict_layers < 1:
        raise ValueError("mtp_agreement needs an MTP layer (num_nextn_predict_layers >= 1)")

    def init(name: str, shape: Tuple[int, ...], kind: str) -> np.ndarray:
        if mtp_agreement is not None:
            w = _mtp_agreement_weight(cfg, name, shape, kind, seed, mtp_agreement)
            if w is not None:
                return w
        return _init(name, shape, kind, seed)

    def produce(name: str) -> np.ndarray:
        if name.endswith("_scale_inv"):
            if name in pending_scales:
                return pending_scales.pop(name)
            base = name[: -len("_scale_inv")]
            return quantize_fp8_blocks(init(base, *kinds[base]), block)[1]
        shape, kind = kinds[name]
        w = init(name, shape, kind)
        if dtype == "fp8" and is_fp8_tensor(name):
            codes, scale_inv = quantize_fp8_blocks(w, block)
            pending_scales[name + "_scale_inv"] = scale_inv
            return codes
        return w

    os.makedirs(out_dir, exist_ok=True)
    # Remove files of an earlier layout so a reader cannot mix old and new shards.
    for f in os.listdir(out_dir):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(out_dir, f))
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg_dict, f, indent=2)
        f.write("\n")
    write_checkpoint_tensors(out_dir, specs, produce, shards=shards, metadata={"format": "pt"})
    return out_dir


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def tokenizer_size(tokenizer_dir: str) -> int:
    """One past the largest id of DIR/tokenizer.json (its BPE vocab and its added tokens)."""
    path = os.path.join(tokenizer_dir, "tokenizer.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            tok = json.load(f)
        ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens") or []]
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from e
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a Hugging Face tokenizer.json with a model vocab: {e}") from e
    if not ids or not all(isinstance(i, int) and i >= 0 for i in ids):
        raise ValueError(f"{path}: token ids must be non-negative integers")
    return max(ids) + 1

def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m dsv3.generate_model",
                                 description="write a random DeepSeek-V3-architecture HF checkpoint")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="HF config.json to instantiate")
    src.add_argument("--preset", choices=sorted(PRESETS), help="built-in config")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=DTYPES, default="bf16")
    ap.add_argument("--shards", type=int, default=1, help="number of safetensors files (>1 writes an index)")
    ap.add_argument("--config-only", action="store_true", help="write only config.json")
    ap.add_argument("--mtp-agreement", type=float, metavar="ALPHA",
                    help="weights whose MTP module drafts what the main model predicts, less often as ALPHA "
                         "(the scale of every block's output) grows; needs num_nextn_predict_layers >= 1")
    ap.add_argument("--tokenizer", metavar="DIR",
                    help="copy DIR's tokenizer.json and tokenizer_config.json into the checkpoint and size the "
                         "model's vocab to the tokenizer (so every id the model can emit has a token)")
    args = ap.parse_args(argv)
    try:
        if args.preset:
            config = preset_config(args.preset)
            if args.preset in CONFIG_ONLY_PRESETS and not args.config_only:
                raise ValueError(f"preset {args.preset!r} is config-only (too big to generate weights); "
                                 f"pass --config-only to write its config.json")
        else:
            try:
                with open(args.config, "r", encoding="utf-8") as f:
                    config = json.load(f)
            except OSError as e:
                raise ValueError(f"{args.config}: cannot read: {e.strerror or e}") from e
            except json.JSONDecodeError as e:
                raise ValueError(f"{args.config}: invalid JSON: {e}") from e
        if args.tokenizer:
            config = dict(config, vocab_size=tokenizer_size(args.tokenizer))
        if args.config_only:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "config.json"), "w", encoding="utf-8") as f:
                json.dump(full_config_dict(config, args.dtype), f, indent=2)
                f.write("\n")
        else:
            generate_checkpoint(config, args.out, seed=args.seed, dtype=args.dtype, shards=args.shards,
                                mtp_agreement=args.mtp_agreement)
        if args.tokenizer:
            for name in TOKENIZER_FILES:
                shutil.copy2(os.path.join(args.tokenizer, name), os.path.join(args.out, name))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
