"""Writes a FAKE dsv3 artifact for runtime tests: manifest.json + the test-double library (fake_model.c).

The manifest follows the artifact contract (docs/runtime.md) for the checkpoint's config.json: the full weight
catalogue of the importer (roles, HF source patterns, stacked shapes, FP8 block scales), so the runtime's loader
is exercised on realistic manifests. Weight dtypes follow dsv3.generate_model's storage: float weights in the
checkpoint's torch_dtype (bf16 or f32), FP8 projections f8e4m3 + f32 `_scale_inv` when quantization_config is
present, the router bias f32.

    python3 fake_artifact.py --checkpoint CKPT --lib libdsv3-fake-model.so --out ART
        [--max-batch 2] [--max-seq-len 64] [--missing-cpu-feature]
        [--set weights.0.dtype='"f32"' ...]     # dotted path (list indices allowed) = JSON value
"""

import argparse
import json
import math
import os
import shutil
import sys

# LLVM feature name -> /proc/cpuinfo flag, for features a CPU of this project's kind may lack.
_RARE_FEATURES = [("avx512fp16", "avx512_fp16"), ("amx-tile", "amx_tile"), ("xop", "xop"), ("fma4", "fma4"),
                  ("tbm", "tbm"), ("sse4a", "sse4a"), ("avx512vp2intersect", "avx512_vp2intersect")]


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags") or line.startswith("Features"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def missing_cpu_feature():
    """An x86 feature (LLVM spelling) this CPU does not have."""
    flags = cpu_flags()
    for llvm_name, flag in _RARE_FEATURES:
        if flag not in flags:
            return llvm_name
    return "avx512fp16"  # unreachable on any released x86 CPU: none has all of the above


def weight_catalogue(cfg):
    """[(role, source, dtype, shape, layers, experts)] in the importer's order (lib/Import/ModelImporter.cpp)."""
    fp8 = cfg.get("quantization_config") is not None
    flt = "f32" if cfg.get("torch_dtype") == "float32" else "bf16"
    block = (cfg.get("quantization_config") or {}).get("weight_block_size", [128, 128])
    L = cfg["num_hidden_layers"]
    experts = cfg.get("n_routed_experts") or 0
    first_dense = cfg.get("first_k_dense_replace", 0) if experts else L
    first_dense = min(first_dense, L)
    n_moe = L - first_dense
    d, v, h = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"]
    nope, rope, vd, kv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    out = []
    stacks = {"none": (None, []), "attn": ([0, L], [L]), "dense": ([0, first_dense], [first_dense]),
              "moe": ([first_dense, n_moe], [n_moe])}

    def add(role, source, stack, shape, dtype=flt, experts_dim=None):
        layers, lead = stacks[stack]
        full = lead + ([experts_dim] if experts_dim else []) + list(shape)
        out.append(dict(role=role, source=source, dtype=dtype, shape=full, layers=layers, experts=experts_dim))

    def proj(role, source, stack, rows, cols, experts_dim=None):
        if not fp8:
            add(role, source, stack, [rows, cols], experts_dim=experts_dim)
            return
        add(role, source, stack, [rows, cols], "f8e4m3", experts_dim)
        add(role + ".scale", source + "_scale_inv", stack,
            [math.ceil(rows / block[0]), math.ceil(cols / block[1])], "f32", experts_dim)

    lay = "model.layers.{layer}."
    att = lay + "self_attn."
    add("embed", "model.embed_tokens.weight", "none", [v, d])
    add("final_norm", "model.norm.weight", "none", [d])
    if not cfg.get("tie_word_embeddings", False):
        add("lm_head", "lm_head.weight", "none", [v, d])
    add("attn.norm", lay + "input_layernorm.weight", "attn", [d])
    q = cfg.get("q_lora_rank")
    if q:
        proj("attn.wq_a", att + "q_a_proj.weight", "attn", q, d)
        add("attn.q_norm", att + "q_a_layernorm.weight", "attn", [q])
        proj("attn.wq_b", att + "q_b_proj.weight", "attn", h * (nope + rope), q)
    else:
        proj("attn.wq", att + "q_proj.weight", "attn", h * (nope + rope), d)
    proj("attn.wkv_a", att + "kv_a_proj_with_mqa.weight", "attn", kv + rope, d)
    add("attn.kv_norm", att + "kv_a_layernorm.weight", "attn", [kv])
    proj("attn.wkv_b", att + "kv_b_proj.weight", "attn", h * (nope + vd), kv)
    proj("attn.wo", att + "o_proj.weight", "attn", d, h * vd)
    add("ffn.norm", lay + "post_attention_layernorm.weight", "attn", [d])
    mlp = lay + "mlp."
    if first_dense:
        inter = cfg["intermediate_size"]
        proj("dense.gate", mlp + "gate_proj.weight", "dense", inter, d)
        proj("dense.up", mlp + "up_proj.weight", "dense", inter, d)
        proj("dense.down", mlp + "down_proj.weight", "dense", d, inter)
    if n_moe:
        e, inter = experts, cfg["moe_intermediate_size"]
        add("moe.router", mlp + "gate.weight", "moe", [e, d])
        if cfg.get("topk_method", "noaux_tc") == "noaux_tc":
            add("moe.router_bias", mlp + "gate.e_score_correction_bias", "moe", [e], "f32")
        ex = mlp + "experts.{expert}."
        proj("moe.expert_gate", ex + "gate_proj.weight", "moe", inter, d, e)
        proj("moe.expert_up", ex + "up_proj.weight", "moe", inter, d, e)
        proj("moe.expert_down", ex + "down_proj.weight", "moe", d, inter, e)
        shared = cfg.get("n_shared_experts") or 0
        if shared:
            s = shared * inter
            proj("moe.shared_gate", mlp + "shared_experts.gate_proj.weight", "moe", s, d)
            proj("moe.shared_up", mlp + "shared_experts.up_proj.weight", "moe", s, d)
            proj("moe.shared_down", mlp + "shared_experts.down_proj.weight", "moe", d, s)
    return out


def make_manifest(cfg, max_batch=2, max_seq_len=64, library="libdsv3model.so", features=None):
    width = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]
    return {
        "format": "dsv3-artifact", "version": 1, "library": library,
        "target": {"kind": "cpu", "triple": "x86_64-unknown-linux-gnu", "cpu": "generic",
                   "features": list(features if features is not None else ["sse2"])},
        "config": cfg,
        "options": {"max_batch": max_batch, "max_seq_len": max_seq_len, "kv_cache": "latent"},
        "entry_points": {"prefill": {"symbol": "dsv3_prefill", "seq_len": -1},
                         "decode": {"symbol": "dsv3_decode", "seq_len": 1}},
        "inputs": [{"name": "tokens", "dtype": "i32", "shape": [max_batch, -1]},
                   {"name": "positions", "dtype": "i64", "shape": [max_batch, -1]},
                   {"name": "kv_cache", "dtype": "f32",
                    "shape": [cfg["num_hidden_layers"], max_batch, max_seq_len, width]}],
        "weights": weight_catalogue(cfg),
        "outputs": [{"name": "logits", "dtype": "f32", "shape": [max_batch, cfg["vocab_size"]]}],
    }


def set_path(obj, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        obj = obj[int(k)] if isinstance(obj, list) else obj[k]
    last = keys[-1]
    if isinstance(obj, list):
        obj[int(last)] = value
    else:
        obj[last] = value


def make_fake_artifact(checkpoint, lib, out, max_batch=2, max_seq_len=64, sets=(), missing_feature=False):
    with open(os.path.join(checkpoint, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    features = ["sse2", "avx"] if "avx" in cpu_flags() else ["sse2"]
    if missing_feature:
        features.append(missing_cpu_feature())
    manifest = make_manifest(cfg, max_batch, max_seq_len, features=features)
    for path, value in sets:
        set_path(manifest, path, value)
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(lib, os.path.join(out, "libdsv3model.so"))
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--lib", required=True, help="the built test-double library (libdsv3-fake-model.so)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-batch", type=int, default=2)
    ap.add_argument("--max-seq-len", type=int, default=64)
    ap.add_argument("--missing-cpu-feature", action="store_true",
                    help="add a target feature this CPU lacks")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=JSON")
    args = ap.parse_args(argv)
    sets = []
    for item in args.set:
        path, _, value = item.partition("=")
        sets.append((path, json.loads(value)))
    make_fake_artifact(args.checkpoint, args.lib, args.out, args.max_batch, args.max_seq_len, sets,
                       args.missing_cpu_feature)
    return 0


if __name__ == "__main__":
    sys.exit(main())
