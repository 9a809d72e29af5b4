"""Random-model generator (names, dtypes, FP8 scales, sharding) and both command-line tools end to end."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import load_golden, subprocess_env
from dsv3 import generate_model as G
from dsv3 import reference as R
from dsv3.config import config_from_dict, load_config
from dsv3.safetensors_io import Checkpoint


def run_module(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)


def expected_names(cfg):
    """HF tensor names of the main model, spelled out independently of the generator (spec §8.2)."""
    names = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        names |= {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
        a = p + "self_attn."
        if cfg.q_lora_rank is None:
            names.add(a + "q_proj.weight")
        else:
            names |= {a + "q_a_proj.weight", a + "q_a_layernorm.weight", a + "q_b_proj.weight"}
        names |= {a + "kv_a_proj_with_mqa.weight", a + "kv_a_layernorm.weight", a + "kv_b_proj.weight",
                  a + "o_proj.weight"}
        mlps = []
        if cfg.n_routed_experts and i >= cfg.first_k_dense_replace and i % cfg.moe_layer_freq == 0:
            names.add(p + "mlp.gate.weight")
            if cfg.topk_method == "noaux_tc":
                names.add(p + "mlp.gate.e_score_correction_bias")
            mlps += [f"{p}mlp.experts.{e}." for e in range(cfg.n_routed_experts)]
            if cfg.n_shared_experts:
                mlps.append(p + "mlp.shared_experts.")
        else:
            mlps.append(p + "mlp.")
        for m in mlps:
            names |= {m + "gate_proj.weight", m + "up_proj.weight", m + "down_proj.weight"}
    return names


def test_variant_names_and_dtypes(variant_checkpoints):
    for name, d in variant_checkpoints.items():
        cfg = load_config(d)
        ck = Checkpoint(d)
        L = cfg.num_hidden_layers
        main = {k for k in ck.keys() if not k.endswith("_scale_inv")
                and not (k.startswith("model.layers.") and int(k.split(".")[2]) >= L)}
        assert main == expected_names(cfg), name
        dtype = G.variant_configs()[name]["dtype"]
        for k in ck.keys():
            dt = ck.info(k).dtype
            if k.endswith("e_score_correction_bias") or dtype == "f32" or k.endswith("_scale_inv"):
                assert dt == "F32", (name, k)
            elif dtype == "fp8" and k.endswith(("_proj.weight", "_proj_with_mqa.weight")):
                assert dt == "F8_E4M3", (name, k)
                shape = ck.info(k).shape
                assert ck.info(k + "_scale_inv").shape == (math.ceil(shape[0] / 128), math.ceil(shape[1] / 128))
            else:
                assert dt == "BF16", (name, k)
        with open(os.path.join(d, "config.json")) as f:
            written = json.load(f)
        assert ("quantization_config" in written) == (dtype == "fp8"), name


def test_fp8_variant_has_partial_blocks_and_matches_f32_weights(tmp_path):
    """FP8 quantisation is a close approximation of the f32 weights of the same seed (relative error of one
    e4m3 rounding, <= 2^-4), scales are amax/448 per block, and edge blocks are partial."""
    v = G.variant_configs()["fp8"]
    d8 = G.generate_checkpoint(v["config"], str(tmp_path / "q"), seed=5, dtype="fp8")
    d32 = G.generate_checkpoint(v["config"], str(tmp_path / "f"), seed=5, dtype="f32")
    cfg = load_config(d8)
    assert cfg.quantization_config["weight_block_size"] == [128, 128]
    wl8 = R.WeightLoader(Checkpoint(d8), cfg)
    wl32 = R.WeightLoader(Checkpoint(d32), load_config(d32))
    name = "model.layers.0.mlp.down_proj.weight"  # [144, 200]: blocks 2 x 2, partial in both dims
    shape = (144, 200)
    assert Checkpoint(d8).info(name + "_scale_inv").shape == (2, 2)
    a, b = wl8.get(name, shape), wl32.get(name, shape)
    s = Checkpoint(d8).get(name + "_scale_inv")
    # one e4m3 rounding: relative 2^-4 for normals, absolute 2^-10 * scale for subnormals (+ f32 slack)
    full_s = np.repeat(np.repeat(s, 128, 0), 128, 1)[:144, :200]
    assert np.all(np.abs(a - b) <= (full_s * 2.0 ** -10 + np.abs(b) * 2.0 ** -4) * (1 + 1e-6))
    assert np.abs(a - b).max() > 0
    assert np.isclose(s[1, 1], np.abs(b[128:, 128:]).max() / 448, rtol=1e-6)


def test_sharded_generation_equals_single(tmp_path):
    cfg = G.preset_config("tiny")
    one = G.generate_checkpoint(cfg, str(tmp_path / "one"), seed=3, dtype="bf16", shards=1)
    four = G.generate_checkpoint(cfg, str(tmp_path / "four"), seed=3, dtype="bf16", shards=4)
    files = sorted(f for f in os.listdir(four) if f.endswith(".safetensors"))
    assert files == [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    a, b = Checkpoint(one), Checkpoint(four)
    assert sorted(a.keys()) == sorted(b.keys())
    for k in a.keys():
        assert np.array_equal(a.raw(k), b.raw(k)), k
    toks = np.array([[1, 2, 3, 4, 5]])
    assert np.array_equal(R.Model(one).prefill(toks), R.Model(four).prefill(toks))


def test_seed_changes_weights(tmp_path):
    cfg = G.preset_config("tiny")
    a = Checkpoint(G.generate_checkpoint(cfg, str(tmp_path / "a"), seed=1, dtype="bf16"))
    b = Checkpoint(G.generate_checkpoint(cfg, str(tmp_path / "b"), seed=2, dtype="bf16"))
    assert not np.array_equal(a.raw("lm_head.weight"), b.raw("lm_head.weight"))


def test_presets():
    bench = config_from_dict(G.preset_config("bench-450m"))
    assert 400e6 < G.count_parameters(bench) < 500e6
    assert [bench.is_moe_layer(i) for i in range(8)] == [False] + [True] * 7
    big = config_from_dict(G.preset_config("deepseek-v3-671b"))
    assert G.count_parameters(big) == 671_026_419_200  # spec §1.3
    with pytest.raises(ValueError, match="over the generator limit"):
        G.generate_checkpoint(G.preset_config("deepseek-v3-671b"), "/nonexistent/never-written")


def test_generator_cli(tmp_path):
    out = tmp_path / "tiny"
    r = run_module("dsv3.generate_model", "--preset", "tiny", "--out", str(out), "--seed", "4", "--dtype", "fp8",
                   "--shards", "2")
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors.index.json").exists()
    assert Checkpoint(str(out)).info("model.layers.0.self_attn.o_proj.weight").dtype == "F8_E4M3"
    r = run_module("dsv3.generate_model", "--preset", "deepseek-v3-671b", "--out", str(tmp_path / "big"))
    assert r.returncode == 1 and "config-only" in r.stderr and not (tmp_path / "big").exists()
    r = run_module("dsv3.generate_model", "--preset", "deepseek-v3-671b", "--out", str(tmp_path / "big"),
                   "--config-only", "--dtype", "fp8")
    assert r.returncode == 0, r.stderr
    assert load_config(str(tmp_path / "big")).hidden_size == 7168
    cfgfile = tmp_path / "c.json"
    cfgfile.write_text(json.dumps(G.variant_configs()["odd-heads"]["config"]))
    r = run_module("dsv3.generate_model", "--config", str(cfgfile), "--out", str(tmp_path / "odd"), "--dtype", "f32")
    assert r.returncode == 0, r.stderr
    assert load_config(str(tmp_path / "odd")).num_attention_heads == 3
    r = run_module("dsv3.generate_model", "--config", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x"))
    assert r.returncode == 1 and r.stderr.startswith("error:")


def test_generator_with_tokenizer(tmp_path):
    """--tokenizer copies the tokenizer files and sizes the vocab to one past the tokenizer's largest id, counted
    here from the file independently of the generator."""
    tok_dir = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer")
    with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    largest = max(max(tok["model"]["vocab"].values()), max(t["id"] for t in tok["added_tokens"]))
    out = tmp_path / "tiny"
    r = run_module("dsv3.generate_model", "--preset", "tiny", "--out", str(out), "--tokenizer", tok_dir)
    assert r.returncode == 0, r.stderr
    assert load_config(str(out)).vocab_size == largest + 1
    assert Checkpoint(str(out)).info("model.embed_tokens.weight").shape[0] == largest + 1
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(tok_dir, name), "rb") as a, open(out / name, "rb") as b:
            assert a.read() == b.read()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{\"model\": {}}")
    r = run_module("dsv3.generate_model", "--preset", "tiny", "--out", str(tmp_path / "x"), "--tokenizer", str(bad))
    assert r.returncode == 1 and "tokenizer.json" in r.stderr


def test_reference_cli_golden(tmp_path):
    d, g, ref = load_golden("tiny-v3")
    out = tmp_path / "l.npy"
    js = tmp_path / "g.json"
    r = run_module("dsv3.reference", "--checkpoint", d, "--tokens", ",".join(map(str, g["tokens"])),
                   "--max-new-tokens", str(g["max_new_tokens"]), "--logits-out", str(out), "--mla-form", "naive",
                   "--json-out", str(js))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ",".join(map(str, g["greedy_tokens"]))
    logits = np.load(out)
    assert logits.dtype == np.float32 and logits.shape == tuple(g["logits_shape"])
    assert np.abs(logits - ref).max() <= 1e-4 * np.abs(ref).max()
    assert json.loads(js.read_text())["greedy_tokens"] == g["greedy_tokens"]


def test_reference_cli_generated_model(tmp_path):
    d = G.generate_checkpoint(G.preset_config("tiny"), str(tmp_path / "m"), seed=0, dtype="bf16", shards=2)
    out = tmp_path / "l.npy"
    r = run_module("dsv3.reference", "--checkpoint", d, "--tokens", "5,6,7", "--max-new-tokens", "3",
                   "--logits-out", str(out))
    assert r.returncode == 0, r.stderr
    logits = np.load(out)
    assert logits.shape == (4, 256)
    assert r.stdout.strip() == ",".join(str(int(t)) for t in logits.argmax(-1))


@pytest.mark.parametrize("args,pattern", [
    (["--checkpoint", "/nonexistent/ckpt", "--tokens", "1"], "does not exist"),
    (["--tokens", "1,2,512"], "token id 512 out of range"),
    (["--tokens", "1,x"], "comma-separated integers"),
    (["--tokens", "1", "--max-new-tokens", "-1"], "max-new-tokens"),
])
def test_reference_cli_errors(args, pattern):
    d, _, _ = load_golden("tiny-v3")
    if "--checkpoint" not in args:
        args = ["--checkpoint", d] + args
    r = run_module("dsv3.reference", *args)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and pattern in lines[0], r.stderr
