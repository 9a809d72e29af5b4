"""The compiled model (dsv3-compile -> artifact -> dsv3-run) against independent references.

- every golden case: the official implementation's greedy tokens exactly, logits within 1e-4 * max|logit|;
- the numpy reference on the generator's config matrix (dense-only, q_lora_rank null, softmax routing without
  groups, sigmoid with groups and bias, no YaRN, odd head counts, v_head_dim != qk_nope_head_dim, FP8, f32),
  with a prompt long enough that decoding runs past position 64;
- the same matrix under every fusion strategy;
- batch 2 (unequal prompts): each sequence's tokens equal the reference run on that sequence alone;
- every fusion strategy (all, none = naive MLA on the per-head K/V cache and per-pair experts, latent = absorbed
  MLA, moe = route -> dispatch -> grouped expert GEMMs -> combine, and all with --naive-prefill-from=2: the prompt
  runs naive MLA on K/V expanded from the latent cache, each decode step absorbed MLA) on the golden cases.

The tools come from $DSV3_BUILD_DIR/bin (set by ctest), else build/bin.
"""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import GOLDEN_CASES, ROOT, load_golden

BIN = os.path.join(os.environ.get("DSV3_BUILD_DIR", os.path.join(ROOT, "build")), "bin")
TOLERANCE = 1e-4  # max |dlogit| <= TOLERANCE * max |logit|

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(BIN, "dsv3-run")),
    reason="the C++ tools are not built (run scripts/setup.sh)")


def compile_artifact(checkpoint, out_dir, *extra, max_seq_len=96):
    subprocess.run([os.path.join(BIN, "dsv3-compile"), checkpoint, "-o", str(out_dir), "--max-seq-len",
                    str(max_seq_len), *extra], check=True, capture_output=True, text=True)
    return str(out_dir)


def run_artifact(artifact, checkpoint, prompts, new_tokens, tmp_path, logits=True):
    cmd = [os.path.join(BIN, "dsv3-run"), artifact, "--weights", checkpoint, "--max-new-tokens", str(new_tokens),
           "--ignore-eos", "--stats-out", str(tmp_path / "stats.json")]
    for p in prompts:
        cmd += ["--tokens", ",".join(map(str, p))]
    if logits:
        cmd += ["--logits-out", str(tmp_path / "logits.npy")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    stats = json.load(open(tmp_path / "stats.json"))
    out = np.load(tmp_path / "logits.npy") if logits else None
    return stats["generated_tokens"], out


def assert_close(got, want):
    assert got.shape == want.shape, (got.shape, want.shape)
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel <= TOLERANCE, f"max |dlogit| / max |logit| = {rel:.3e}"
    assert (got.argmax(-1) == want.argmax(-1)).all(), "greedy tokens differ"


@pytest.mark.parametrize("case", GOLDEN_CASES)
@pytest.mark.parametrize("fusion", ["all", "none", "latent", "moe", "all --naive-prefill-from=2"])
def test_golden(case, fusion, tmp_path):
    ckpt, golden, want = load_golden(case)
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *f"--fusion={fusion}".split())
    tokens, got = run_artifact(artifact, ckpt, [golden["tokens"]], golden["max_new_tokens"], tmp_path)
    assert tokens[0] == golden["greedy_tokens"][:golden["max_new_tokens"]]
    assert_close(got, want)


# Decoding 12 tokens after a 60-token prompt runs positions 60..71: past 64.
PROMPT = [(7 * i + 3) % 50 + 2 for i in range(60)]
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def reference_runs():
    """Greedy logits of the numpy reference, computed once per (checkpoint, prompt)."""
    from dsv3.reference import Model, greedy_logits
    cache = {}

    def run(checkpoint, prompt, new_tokens):
        key = (checkpoint, tuple(prompt), new_tokens)
        if key not in cache:
            cache[key] = greedy_logits(Model(checkpoint), prompt, new_tokens)
        return cache[key]
    return run


MATRIX = ["base-v3", "dense-null-experts", "dense-first-k", "no-q-lora", "softmax-no-groups",
          "softmax-groups-no-bias", "sigmoid-groups-bias", "no-shared-top1", "no-yarn", "odd-heads", "v-ne-nope",
          "with-mtp-layer", "f32", "fp8", "fp8-fused-down"]


@pytest.mark.parametrize("fusion", ["all", "none", "latent", "moe"])
@pytest.mark.parametrize("name", MATRIX)
def test_matches_reference(name, fusion, variant_checkpoints, reference_runs, tmp_path):
    ckpt = variant_checkpoints[name]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", f"--fusion={fusion}")
    want, greedy = reference_runs(ckpt, PROMPT, NEW_TOKENS)
    tokens, got = run_artifact(artifact, ckpt, [PROMPT], NEW_TOKENS, tmp_path)
    assert tokens[0] == greedy[:NEW_TOKENS]
    assert_close(got, want)


@pytest.mark.parametrize("fusion", ["all", "none", "all --naive-prefill-from=8"])
def test_batch_of_two_unequal_prompts(fusion, variant_checkpoints, reference_runs, tmp_path):
    ckpt = variant_checkpoints["sigmoid-groups-bias"]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", "--max-batch", "2", *f"--fusion={fusion}".split())
    prompts = [PROMPT, PROMPT[:37][::-1]]
    tokens, _ = run_artifact(artifact, ckpt, prompts, NEW_TOKENS, tmp_path, logits=False)
    for prompt, generated in zip(prompts, tokens):
        _, greedy = reference_runs(ckpt, prompt, NEW_TOKENS)
        assert generated == greedy[:NEW_TOKENS]


def test_unsupported_moe_layer_freq_is_a_clear_error(variant_checkpoints, tmp_path):
    result = subprocess.run([os.path.join(BIN, "dsv3-compile"), variant_checkpoints["moe-layer-freq-2"], "-o",
                             str(tmp_path / "artifact")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == \
        "dsv3-compile: error: config field 'moe_layer_freq': only 1 is supported, got 2"


DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "f8e4m3": 1}


def test_prepare_entry_replaces_its_sources(tmp_path):
    """--fusion=all concatenates q_a and kv_a in the compiled prepare entry: the manifest lists the prepared weight,
    prefill/decode take it instead of the two sources, and after load the runtime holds the prepared weight and
    no longer the sources (weights_bytes)."""
    ckpt, golden, _ = load_golden("tiny-v3")
    artifact = compile_artifact(ckpt, tmp_path / "artifact")
    manifest = json.load(open(os.path.join(artifact, "manifest.json")))
    prepare = manifest["entry_points"]["prepare"]
    assert prepare["weights"] == ["attn.wq_a", "attn.wkv_a"]
    assert prepare["results"] == ["attn.wq_kv_a"]
    assert [p["shape"] for p in manifest["prepared"]] == [[3, 64 + 32 + 8, 128]]
    forward = manifest["entry_points"]["prefill"]["weights"]
    assert "attn.wq_kv_a" in forward and "attn.wq_a" not in forward and "attn.wkv_a" not in forward

    def nbytes(spec):
        return int(np.prod(spec["shape"])) * DTYPE_BYTES[spec["dtype"]]
    expected = sum(nbytes(w) for w in manifest["weights"] if w["role"] in forward)
    expected += sum(nbytes(p) for p in manifest["prepared"])
    run_artifact(artifact, ckpt, [golden["tokens"]], 2, tmp_path, logits=False)
    stats = json.load(open(tmp_path / "stats.json"))
    assert stats["weights_bytes"] == expected


def test_missing_prepare_entry_is_a_clear_error(tmp_path):
    """A manifest whose prepare symbol the library does not export: one error line, exit 1, no output."""
    ckpt, golden, _ = load_golden("tiny-v3")
    artifact = compile_artifact(ckpt, tmp_path / "artifact")
    path = os.path.join(artifact, "manifest.json")
    manifest = json.load(open(path))
    manifest["entry_points"]["prepare"]["symbol"] = "dsv3_no_such_entry"
    json.dump(manifest, open(path, "w"))
    result = subprocess.run([os.path.join(BIN, "dsv3-run"), artifact, "--weights", ckpt, "--tokens", "1,2,3"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].endswith(
        "libdsv3model.so: entry point 'dsv3_no_such_entry' is not exported by the artifact's library")
