"""The GPU kernels' logic, tested without a GPU.

`dsv3-compile --gpu-tiled-on-cpu` runs the GPU pipeline up to the point where its loops are mapped to blocks and
threads (dsv3-gpu-loops: every op as parallel loops, serial glue in one-thread loops, each loop split into a block
tile and a thread tile with its bounds guard) and lowers that tiled form for the CPU. The same loops, mapped, are the
GPU kernels, so this checks their tiling, guards and glue against the independent references:

- the golden cases (the official implementation): greedy tokens exactly, logits within 1e-4 * max|logit|;
- the numpy reference on configs that stress the tiling: FP8 block scales, odd head counts, v_head_dim !=
  qk_nope_head_dim, softmax routing without groups, and batch 2 with unequal prompts;
- block sizes that do not divide the loop extents (threads-per-block 7 and 1000), so the bounds guards matter.

Those run the CUDA-core kernels (--tensor-cores=false: f32 throughout, so the 1e-4 tolerance holds). The tensor-core
kernels (MMA tiles with bf16 operands and f32 accumulation, which the GPU runs as wgmma on sm_90a -- 64-row tiles, a
warpgroup each -- and as mma.sync on sm_80 -- 16-row tiles, a warp each; both shapes run here: the linears with
bf16 weights but the router, the grouped expert GEMMs on the expert rows gathered as bf16, and the absorbed
attention as one fused kernel: q . cache, an online softmax over chunks of 32 positions, P . latent) are checked on
their own, against the golden logits (the golden tokens, which a bf16 build may leave only at a near tie:
gpu_check.compare_with_golden) and against the numpy reference that rounds the same operands to bf16 and runs the
same online softmax (Model(bf16_tensor_core_inputs=True)), on 60-token prompts (an
expert's rows span several 16-row tiles or part of a 64-row one, shared slots sit after the routed rows, heads and positions fill partial
tiles), within BF16_TOLERANCE with identical greedy tokens. Not tighter: a value within ~1e-7 of a bf16 rounding
midpoint rounds one way in the reference and the other in the tiles (their f32 sums differ in order), and where few
values are rounded (7 attention probabilities, a 48-wide hidden state) one such flip moves the logits by ~1e-3.
"""

import json
import os
import sys

import numpy as np
import pytest

from conftest import GOLDEN_CASES, ROOT, load_golden
from test_compiled_model import (NEW_TOKENS, PROMPT, assert_close, compile_artifact,  # noqa: F401
                                 reference_runs, run_artifact)

sys.path.insert(0, os.path.join(ROOT, "bench"))
import gpu_check  # noqa: E402  (the golden comparison the GPU check makes)

# With an f32 KV cache, so that the CUDA-core kernels are checked at the f32 tolerance (the default bf16 cache:
# test_cuda_core_tiles_bf16_cache_match_reference).
TILED = ("--gpu-tiled-on-cpu", "--tensor-cores=false", "--kv-cache-dtype=f32")
TENSOR_CORES = ("--gpu-tiled-on-cpu",)  # the default: expert GEMMs as warp MMA tiles where the weights allow
# The two tile shapes: 64 x 8 (sm_90a, the default: one warpgroup's wgmma) and 16 x 8 (sm_80, or sm_90a with
# --wgmma=false: one warp's mma.sync). Their row tiling, padding and masks differ, so both run.
TILE_SHAPES = {"wgmma": ("--chip=sm_90a",), "mma.sync": ("--chip=sm_80",)}
MMA_OF_TILES = {"wgmma": "wgmma.m64nNk16", "mma.sync": "mma.sync.m16n8k16"}
# bf16 operands put the logits 4e-3..1e-2 * max|logit| from the f32 references on these models; a wrong tile (rows,
# columns, a k step, a mask) is off by far more.
BF16_TOLERANCE = 2e-2


def assert_close_bf16(got, want):
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel <= BF16_TOLERANCE, f"max |dlogit| / max |logit| = {rel:.3e}"


@pytest.mark.parametrize("case", GOLDEN_CASES)
@pytest.mark.parametrize("fusion", ["all", "none", "latent", "moe", "all --naive-prefill-from=2"])
def test_golden(case, fusion, tmp_path):
    ckpt, golden, want = load_golden(case)
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *TILED, *f"--fusion={fusion}".split())
    tokens, got = run_artifact(artifact, ckpt, [golden["tokens"]], golden["max_new_tokens"], tmp_path)
    assert tokens[0] == golden["greedy_tokens"][:golden["max_new_tokens"]]
    assert_close(got, want)


@pytest.mark.parametrize("name", ["fp8", "odd-heads", "v-ne-nope", "softmax-no-groups"])
def test_matches_reference(name, variant_checkpoints, reference_runs, tmp_path):
    ckpt = variant_checkpoints[name]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *TILED)
    want, greedy = reference_runs(ckpt, PROMPT, NEW_TOKENS)
    tokens, got = run_artifact(artifact, ckpt, [PROMPT], NEW_TOKENS, tmp_path)
    assert tokens[0] == greedy[:NEW_TOKENS]
    assert_close(got, want)


@pytest.mark.parametrize("threads", ["7", "1000"])
def test_block_sizes_that_do_not_divide_the_loops(threads, variant_checkpoints, reference_runs, tmp_path):
    ckpt = variant_checkpoints["sigmoid-groups-bias"]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *TILED, "--threads-per-block", threads)
    want, greedy = reference_runs(ckpt, PROMPT, NEW_TOKENS)
    tokens, got = run_artifact(artifact, ckpt, [PROMPT], NEW_TOKENS, tmp_path)
    assert tokens[0] == greedy[:NEW_TOKENS]
    assert_close(got, want)


def test_batch_of_two_unequal_prompts(variant_checkpoints, reference_runs, tmp_path):
    ckpt = variant_checkpoints["sigmoid-groups-bias"]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *TILED, "--max-batch", "2")
    prompts = [PROMPT, PROMPT[:37][::-1]]
    tokens, _ = run_artifact(artifact, ckpt, prompts, NEW_TOKENS, tmp_path, logits=False)
    for prompt, generated in zip(prompts, tokens):
        _, greedy = reference_runs(ckpt, prompt, NEW_TOKENS)
        assert generated == greedy[:NEW_TOKENS]


@pytest.mark.parametrize("dtype,name,fusion", [
    ("bf16", n, f) for n in ["fp8", "v-ne-nope"] for f in ["all", "none"]] + [
    ("fp8", "wide-latent", "all"), ("fp8", "v-ne-nope", "all"), ("fp8", "base-v3", "none")])
def test_cuda_core_tiles_with_cache_dtype_match_reference(dtype, name, fusion, variant_checkpoints, tmp_path):
    """The GPU's CUDA-core kernels with the default bf16 KV cache, or the packed FP8 one (latent, or per-head with
    fusion=none), against the reference that rounds its cache the same way (test_compiled_model's
    BF16_CACHE_REFERENCE_TOLERANCE and FP8_CACHE_REFERENCE_TOLERANCE)."""
    from dsv3.reference import Model, greedy_logits
    from test_compiled_model import BF16_CACHE_REFERENCE_TOLERANCE, FP8_CACHE_REFERENCE_TOLERANCE, cache_of
    ckpt = variant_checkpoints[name]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", "--gpu-tiled-on-cpu", "--tensor-cores=false",
                                f"--kv-cache-dtype={dtype}", f"--fusion={fusion}")
    cache_dtype, form = cache_of(artifact)
    assert cache_dtype == dtype
    want, greedy = greedy_logits(Model(ckpt, mla_form=form, kv_cache_dtype=dtype), PROMPT, NEW_TOKENS)
    tokens, got = run_artifact(artifact, ckpt, [PROMPT], NEW_TOKENS, tmp_path)
    assert tokens[0] == greedy[:NEW_TOKENS]
    assert_close(got, want, BF16_CACHE_REFERENCE_TOLERANCE if dtype == "bf16" else FP8_CACHE_REFERENCE_TOLERANCE)


def test_tensor_core_tiles_bitwise_equal_with_bf16_and_f32_cache(tmp_path):
    """The tensor-core kernels take the cache as bf16 operands whatever it stores, and a bf16 cache stores exactly
    that rounding: the default bf16 cache changes no bit of their logits (both tile shapes)."""
    ckpt, golden, _ = load_golden("tiny-v3")
    for tiles, chip in TILE_SHAPES.items():
        logits = []
        for dtype in ("f32", "bf16"):
            artifact = compile_artifact(ckpt, tmp_path / f"{tiles}-{dtype}", *TENSOR_CORES, *chip,
                                        f"--kv-cache-dtype={dtype}")
            _, got = run_artifact(artifact, ckpt, [PROMPT], 4, tmp_path)
            logits.append(got)
        assert np.array_equal(logits[0], logits[1]), tiles


@pytest.mark.parametrize("tiles", TILE_SHAPES)
@pytest.mark.parametrize("case", GOLDEN_CASES)
@pytest.mark.parametrize("fusion", ["all", "all --naive-prefill-from=2"])
def test_tensor_core_tiles_reproduce_golden(case, fusion, tiles, tmp_path):
    """With --naive-prefill-from=2 the prefill runs the naive attention on K/V expanded from the latent cache, whose
    two products are tiles too (the query positions as M)."""
    ckpt, golden, want = load_golden(case)
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *TENSOR_CORES, *TILE_SHAPES[tiles],
                                *f"--fusion={fusion}".split())
    with open(os.path.join(artifact, "manifest.json")) as f:
        target = json.load(f)["target"]
    assert target["tensor_cores"] is True
    assert target["mma"] == MMA_OF_TILES[tiles]
    tokens, got = run_artifact(artifact, ckpt, [golden["tokens"]], golden["max_new_tokens"], tmp_path)
    result = gpu_check.compare_with_golden(tokens[0], got, golden["greedy_tokens"][:golden["max_new_tokens"]], want,
                                           BF16_TOLERANCE, allow_near_ties=True)
    assert result["ok"], result
    # Only tiny-v3's first step is a near tie (its two best logits 2e-3 * max|logit| apart): everywhere else the
    # whole trajectory is compared.
    if case != "tiny-v3":
        assert result["tokens_identical"] and result["steps_compared"] == len(want), result


@pytest.mark.parametrize("tiles", TILE_SHAPES)
@pytest.mark.parametrize("name", ["sigmoid-groups-bias", "softmax-no-groups", "fp8", "odd-heads"])
def test_tensor_core_tiles_match_bf16_reference(name, tiles, variant_checkpoints, tmp_path):
    """60 tokens: 8 experts x top-3 gives ~22 rows per expert (two 16-row tiles, one partial 64-row tile), the shared
    slots 60 rows each (four 16-row tiles, one 64-row tile); softmax-no-groups has two shared slots; fp8 keeps its
    linears and expert GEMMs on CUDA cores (FP8 weights) while its attention uses the tiles; odd-heads fills partial
    tiles of heads."""
    from dsv3.reference import Model, greedy_logits
    ckpt = variant_checkpoints[name]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *TENSOR_CORES, *TILE_SHAPES[tiles])
    want, greedy = greedy_logits(Model(ckpt, bf16_tensor_core_inputs=True), PROMPT, NEW_TOKENS)
    tokens, got = run_artifact(artifact, ckpt, [PROMPT], NEW_TOKENS, tmp_path)
    assert tokens[0] == greedy[:NEW_TOKENS]
    assert_close_bf16(got, want)
    # The rounding is really there: the f32 reference is further away than f32 kernels ever are.
    want_f32, _ = greedy_logits(Model(ckpt), PROMPT, NEW_TOKENS)
    assert np.abs(got - want_f32).max() / np.abs(want_f32).max() > 1e-3


@pytest.mark.parametrize("tiles", TILE_SHAPES)
@pytest.mark.parametrize("name", ["wide-latent", "odd-heads"])
def test_tensor_core_tiles_with_fp8_cache_match_reference(name, tiles, variant_checkpoints, tmp_path):
    """The packed FP8 cache under the tensor-core attention: its prefix unpacked exactly into the tiles' bf16
    operands, against the reference that quantizes its cache and rounds the tiles' inputs the same way."""
    from dsv3.reference import Model, greedy_logits
    from test_compiled_model import cache_of
    ckpt = variant_checkpoints[name]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *TENSOR_CORES, *TILE_SHAPES[tiles],
                                "--kv-cache-dtype=fp8")
    assert cache_of(artifact) == ("fp8", "absorbed")
    want, greedy = greedy_logits(Model(ckpt, bf16_tensor_core_inputs=True, kv_cache_dtype="fp8"), PROMPT,
                                 NEW_TOKENS)
    tokens, got = run_artifact(artifact, ckpt, [PROMPT], NEW_TOKENS, tmp_path)
    assert tokens[0] == greedy[:NEW_TOKENS]
    assert_close_bf16(got, want)


@pytest.mark.parametrize("tiles", TILE_SHAPES)
def test_fused_attention_splits_a_long_cache(tiles, variant_checkpoints, tmp_path):
    """A 300-token prompt spans two 256-position splits of the fused attention (both run as tiles, then the combine
    kernel merges them); absorbed attention for the prefill too, so the queries before position 256 see nothing in
    the second split (their row max stays -inf there and must not turn into NaN)."""
    from dsv3.reference import FLASH_SPLIT, Model, greedy_logits
    ckpt = variant_checkpoints["sigmoid-groups-bias"]
    prompt = [(5 * i + 1) % 50 + 2 for i in range(300)]
    assert FLASH_SPLIT < len(prompt) < 2 * FLASH_SPLIT
    artifact = compile_artifact(ckpt, tmp_path / "artifact", "--naive-prefill-from=0", *TENSOR_CORES,
                                *TILE_SHAPES[tiles], max_seq_len=320)
    want, greedy = greedy_logits(Model(ckpt, bf16_tensor_core_inputs=True), prompt, 4)
    tokens, got = run_artifact(artifact, ckpt, [prompt], 4, tmp_path)
    assert tokens[0] == greedy[:4]
    assert_close_bf16(got, want)


@pytest.mark.parametrize("tiles", TILE_SHAPES)
def test_tensor_core_tiles_batch_of_two_unequal_prompts(tiles, variant_checkpoints, tmp_path):
    """Two sequences in one call: the attention tiles batch over sequences, each with its own used length and
    causal mask; the expert and linear tiles mix both sequences' rows."""
    from dsv3.reference import Model, greedy_logits
    ckpt = variant_checkpoints["sigmoid-groups-bias"]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", *TENSOR_CORES, *TILE_SHAPES[tiles], "--max-batch", "2")
    prompts = [PROMPT, PROMPT[:37][::-1]]
    tokens, _ = run_artifact(artifact, ckpt, prompts, NEW_TOKENS, tmp_path, logits=False)
    for prompt, generated in zip(prompts, tokens):
        _, greedy = greedy_logits(Model(ckpt, bf16_tensor_core_inputs=True), prompt, NEW_TOKENS)
        assert generated == greedy[:NEW_TOKENS]
