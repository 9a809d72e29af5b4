"""The runtime from Python: dsv3.runtime (ctypes bindings to libdsv3rt) and dsv3-run's output files.

Runs against the TEST DOUBLE of a compiled artifact (test/Runtime/Inputs/fake_model.c, built as
libdsv3-fake-model.so): next token = (sum of the sequence so far, read back from the KV cache) mod vocab; logits
4, 3, 2, 1 on that token and the three after it, -20 elsewhere. Needs a build (ninja dsv3rt dsv3-run
dsv3-fake-model); skipped otherwise. The build is $DSV3_BUILD_DIR (set by ctest) or the one dsv3.runtime finds.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "test", "Runtime", "Inputs"))
import fake_artifact  # noqa: E402

from dsv3 import runtime  # noqa: E402
from dsv3.generate_model import generate_checkpoint, variant_configs  # noqa: E402

BUILD = os.path.dirname(os.path.dirname(runtime.library_path()))
FAKE_LIB = os.path.join(BUILD, "test", "Runtime", "libdsv3-fake-model.so")
DSV3_RUN = os.path.join(BUILD, "bin", "dsv3-run")

pytestmark = pytest.mark.skipif(
    not (os.path.isfile(runtime.library_path()) and os.path.isfile(FAKE_LIB)),
    reason="libdsv3rt.so / libdsv3-fake-model.so not built")


def expected_greedy(prompt, n, vocab, eos=1, stop_at_eos=True):
    seq, out = list(prompt), []
    for _ in range(n):
        t = sum(seq) % vocab
        out.append(t)
        seq.append(t)
        if stop_at_eos and t == eos:
            break
    return out


def expected_logits(seq, vocab):
    d = (np.arange(vocab) - sum(seq) % vocab) % vocab
    return np.where(d < 4, 4.0 - d, -20.0).astype(np.float32)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """(checkpoint, artifact) for the small V3 config in FP8 (stacked FP8 experts + f32 block scales)."""
    base = tmp_path_factory.mktemp("runtime")
    v = variant_configs()["fp8"]
    ckpt = generate_checkpoint(v["config"], str(base / "ckpt"), seed=5, dtype="fp8")
    art = fake_artifact.make_fake_artifact(ckpt, FAKE_LIB, str(base / "art"), max_batch=2, max_seq_len=24)
    return ckpt, art


@pytest.fixture(scope="module")
def rt(model_dirs):
    ckpt, art = model_dirs
    with runtime.Runtime(art, ckpt, threads=2) as r:
        yield r


# -- ctypes binding ---------------------------------------------------------------------------------------------------

def test_open_and_info(rt, model_dirs):
    assert rt.vocab_size == 96 and rt.max_batch == 2 and rt.max_seq_len == 24 and rt.eos_token_id == 1
    assert rt.num_threads == 2
    info = runtime.artifact_info(model_dirs[1])
    assert info["vocab_size"] == 96 and info["num_layers"] == 2
    assert rt.stats["weights_bytes"] == info["weights_bytes"] > 0
    assert rt.stats["kv_cache_bytes"] == 2 * 2 * 24 * (16 + 4) * 4
    assert runtime.version().startswith("dsv3rt")


def test_greedy(rt):
    out = rt.generate([[2, 3, 4]], max_new_tokens=6)
    assert out.tokens == [expected_greedy([2, 3, 4], 6, 96)]
    assert out.logits is None
    s = out.stats
    assert s["prefill_tokens"] == 3 and s["prefill_calls"] == 1
    assert s["decode_tokens"] == 5 and s["decode_calls"] == 5


def test_batch_of_unequal_prompts(rt):
    prompts = [[7], [3, 9, 27, 5, 11]]
    out = rt.generate(prompts, max_new_tokens=5)
    assert out.tokens == [expected_greedy(p, 5, 96) for p in prompts]
    # Each equals the sequence generated alone.
    for p, toks in zip(prompts, out.tokens):
        assert rt.generate([p], max_new_tokens=5).tokens == [toks]


def test_stop_at_eos(rt):
    out = rt.generate([[40, 57], [2]], max_new_tokens=4)  # 97 = 1 mod 96: eos at once
    assert out.tokens == [[1], expected_greedy([2], 4, 96)]
    out = rt.generate([[40, 57]], max_new_tokens=4, stop_at_eos=False)
    assert out.tokens == [expected_greedy([40, 57], 4, 96, stop_at_eos=False)]


def test_logits_and_last_logits(rt):
    out = rt.generate([[5, 6], [40, 57]], max_new_tokens=4, logits=True)
    for prompt, toks, rows in zip([[5, 6], [40, 57]], out.tokens, out.logits):
        assert rows.dtype == np.float32 and rows.shape == (1 + len(toks), 96)
        seq = list(prompt)
        for i, row in enumerate(rows):
            np.testing.assert_array_equal(row, expected_logits(seq, 96))
            if i < len(toks):
                assert toks[i] == int(np.argmax(row))
                seq.append(toks[i])
    np.testing.assert_array_equal(rt.last_logits(0), out.logits[0][-1])
    np.testing.assert_array_equal(rt.last_logits(1), out.logits[1][-1])
    with pytest.raises(RuntimeError, match="no logits for sequence 2"):
        rt.last_logits(2)


def test_sampling_is_reproducible(rt):
    kw = dict(max_new_tokens=16, temperature=1.0, seed=42, stop_at_eos=False)
    a = rt.generate([[2, 3], [2, 3]], **kw).tokens
    assert a == rt.generate([[2, 3], [2, 3]], **kw).tokens
    assert a[0] != a[1]  # one stream per sequence
    assert rt.generate([[2, 3]], **kw).tokens[0] == a[0]  # independent of the rest of the batch
    assert rt.generate([[2, 3]], **dict(kw, seed=43)).tokens[0] != a[0]
    # top_p 0.5 keeps only the top token (p = 0.644): greedy.
    assert rt.generate([[2, 3]], **dict(kw, top_p=0.5)).tokens[0] == expected_greedy([2, 3], 16, 96, stop_at_eos=False)
    # top_p 0.85 keeps the top two.
    seq = [2, 3]
    for t in rt.generate([[2, 3]], **dict(kw, top_p=0.85)).tokens[0]:
        assert (t - sum(seq)) % 96 in (0, 1)
        seq.append(t)


def test_streaming_callback(rt):
    plain = rt.generate([[3], [2, 4, 6]], max_new_tokens=6, stop_at_eos=False).tokens
    seen = []
    out = rt.generate([[3], [2, 4, 6]], max_new_tokens=6, stop_at_eos=False,
                      on_token=lambda seq, tok: seen.append((seq, tok)))
    assert out.tokens == plain
    assert [[t for s, t in seen if s == i] for i in range(2)] == plain
    # Tokens arrive step by step, interleaved between the sequences.
    assert {s for s, _ in seen[:4]} == {0, 1}
    # False stops one sequence after that token; the other goes on.
    out = rt.generate([[3], [2, 4, 6]], max_new_tokens=6, stop_at_eos=False,
                      on_token=lambda seq, tok: not (seq == 1 and tok == plain[1][1]))
    assert out.tokens == [plain[0], plain[1][:2]]
    # An exception in the callback comes out of generate; the model stays usable.
    def boom(seq, tok):
        raise KeyError("from the callback")
    with pytest.raises(KeyError, match="from the callback"):
        rt.generate([[3]], max_new_tokens=4, on_token=boom)
    assert rt.generate([[3], [2, 4, 6]], max_new_tokens=6, stop_at_eos=False).tokens == plain


def test_request_errors(rt):
    with pytest.raises(RuntimeError, match=r"^sequence 0: token id 96 at position 1 is out of range \[0, 96\)$"):
        rt.generate([[1, 96]], max_new_tokens=2)
    with pytest.raises(RuntimeError, match="exceed the artifact's max sequence length of 24"):
        rt.generate([[1] * 20], max_new_tokens=5)
    with pytest.raises(RuntimeError, match="^3 sequences exceed the artifact's max batch of 2$"):
        rt.generate([[1], [2], [3]], max_new_tokens=1)
    with pytest.raises(RuntimeError, match="top-p"):
        rt.generate([[1]], top_p=0.0)
    with pytest.raises(RuntimeError, match="max new tokens"):
        rt.generate([[1]], max_new_tokens=-1)
    assert rt.generate([[2]], max_new_tokens=1).tokens == [[2]]  # still usable


def test_open_errors(model_dirs, tmp_path):
    ckpt, art = model_dirs
    # A checkpoint of another config.
    other = generate_checkpoint(variant_configs()["base-v3"]["config"], str(tmp_path / "other"), seed=1, dtype="bf16")
    with pytest.raises(RuntimeError, match="checkpoint does not match the artifact: config field 'hidden_size'"):
        runtime.Runtime(art, other)
    # A missing weight file.
    broken = tmp_path / "broken"
    broken.mkdir()
    with open(os.path.join(ckpt, "config.json"), encoding="utf-8") as f:
        (broken / "config.json").write_text(f.read())
    with pytest.raises(RuntimeError, match=str(broken)):
        runtime.Runtime(art, str(broken))
    # An artifact for CPU features this machine lacks.
    bad_art = fake_artifact.make_fake_artifact(ckpt, FAKE_LIB, str(tmp_path / "bad_art"), missing_feature=True)
    with pytest.raises(RuntimeError, match="needs CPU features this machine does not have"):
        runtime.Runtime(bad_art, ckpt)
    with pytest.raises(RuntimeError, match="artifact directory does not exist"):
        runtime.artifact_info(str(tmp_path / "nowhere"))


def test_progress_callback(model_dirs):
    ckpt, art = model_dirs
    seen = []
    with runtime.Runtime(art, ckpt, threads=1, progress=lambda d, t: seen.append((d, t))) as r:
        total = r.stats["weights_bytes"]
    assert seen and seen[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


# -- dsv3-run's files -------------------------------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([DSV3_RUN, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not os.path.isfile(DSV3_RUN), reason="dsv3-run not built")
def test_cli_logits_and_stats(model_dirs, tmp_path):
    ckpt, art = model_dirs
    npy, stats = str(tmp_path / "l.npy"), str(tmp_path / "s.json")
    r = run_cli(art, "--weights", ckpt, "--tokens", "5,6,7", "--max-new-tokens", "5", "--logits-out", npy,
                "--stats-out", stats, "--threads", "2")
    assert r.returncode == 0, r.stderr
    toks = expected_greedy([5, 6, 7], 5, 96)
    assert r.stdout.splitlines()[0] == "sequence 0: " + ",".join(map(str, toks))
    assert r.stderr == ""
    logits = np.load(npy)
    assert logits.dtype == np.float32 and logits.shape == (6, 96)
    seq = [5, 6, 7]
    for i, row in enumerate(logits):
        np.testing.assert_array_equal(row, expected_logits(seq, 96))
        seq.append(toks[i]) if i < len(toks) else None
    s = json.load(open(stats, encoding="utf-8"))
    for key in ("prefill_tokens", "prefill_seconds", "decode_tokens", "decode_seconds", "weights_bytes",
                "kv_cache_bytes"):
        assert key in s, key
    assert s["prefill_tokens"] == 3 and s["decode_tokens"] == 5  # every token fed back for its logits row
    assert s["weights_bytes"] > 0 and s["kv_cache_bytes"] == 2 * 2 * 24 * 20 * 4
    assert s["num_threads"] == 2 and s["generated_tokens"] == [toks]


@pytest.mark.skipif(not os.path.isfile(DSV3_RUN), reason="dsv3-run not built")
def test_cli_matches_the_binding(model_dirs, rt):
    ckpt, art = model_dirs
    r = run_cli(art, "--weights", ckpt, "--tokens", "2,3", "--tokens", "9", "--max-new-tokens", "8",
                "--temperature", "0.9", "--top-p", "0.95", "--seed", "7")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    py = rt.generate([[2, 3], [9]], max_new_tokens=8, temperature=0.9, top_p=0.95, seed=7).tokens
    for i in range(2):
        assert lines[i] == f"sequence {i}: " + ",".join(map(str, py[i]))
    assert lines[2].startswith("prefill: 2 tokens in ") and lines[2].endswith(" tokens/s)")
    assert lines[3].startswith("decode: ")


@pytest.mark.skipif(not os.path.isfile(DSV3_RUN), reason="dsv3-run not built")
def test_cli_errors_leave_no_files(model_dirs, tmp_path):
    ckpt, art = model_dirs
    npy, stats = str(tmp_path / "l.npy"), str(tmp_path / "s.json")
    r = run_cli(art, "--weights", ckpt, "--tokens", "1,99", "--logits-out", npy, "--stats-out", stats)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == "dsv3-run: error: sequence 0: token id 99 at position 1 is out of range [0, 96)\n"
    assert not os.path.exists(npy) and not os.path.exists(stats)
    # An unwritable output path: error, nothing else written.
    r = run_cli(art, "--weights", ckpt, "--tokens", "1", "--logits-out", str(tmp_path / "no" / "l.npy"),
                "--stats-out", stats)
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert "l.npy: cannot write" in r.stderr
    assert not os.path.exists(stats)
