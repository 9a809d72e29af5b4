"""The GPU kernels' logic, tested without a GPU.

`dsv3-compile --gpu-tiled-on-cpu` runs the GPU pipeline up to the point where its loops are mapped to blocks and
threads (dsv3-gpu-loops: every op as parallel loops, serial glue in one-thread loops, each loop split into a block
tile and a thread tile with its bounds guard) and lowers that tiled form for the CPU. The same loops, mapped, are the
GPU kernels, so this checks their tiling, guards and glue against the independent references:

- the golden cases (the official implementation): greedy tokens exactly, logits within 1e-4 * max|logit|;
- the numpy reference on configs that stress the tiling: FP8 block scales, odd head counts, v_head_dim !=
  qk_nope_head_dim, softmax routing without groups, and batch 2 with unequal prompts;
- block sizes that do not divide the loop extents (threads-per-block 7 and 1000), so the bounds guards matter.
"""

import pytest

from conftest import GOLDEN_CASES, load_golden
from test_compiled_model import (NEW_TOKENS, PROMPT, assert_close, compile_artifact, reference_runs,  # noqa: F401
                                 run_artifact)

TILED = "--gpu-tiled-on-cpu"


@pytest.mark.parametrize("case", GOLDEN_CASES)
@pytest.mark.parametrize("fusion", ["all", "none", "latent", "moe", "all --naive-prefill-from=2"])
def test_golden(case, fusion, tmp_path):
    ckpt, golden, want = load_golden(case)
    artifact = compile_artifact(ckpt, tmp_path / "artifact", TILED, *f"--fusion={fusion}".split())
    tokens, got = run_artifact(artifact, ckpt, [golden["tokens"]], golden["max_new_tokens"], tmp_path)
    assert tokens[0] == golden["greedy_tokens"][:golden["max_new_tokens"]]
    assert_close(got, want)


@pytest.mark.parametrize("name", ["fp8", "odd-heads", "v-ne-nope", "softmax-no-groups"])
def test_matches_reference(name, variant_checkpoints, reference_runs, tmp_path):
    ckpt = variant_checkpoints[name]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", TILED)
    want, greedy = reference_runs(ckpt, PROMPT, NEW_TOKENS)
    tokens, got = run_artifact(artifact, ckpt, [PROMPT], NEW_TOKENS, tmp_path)
    assert tokens[0] == greedy[:NEW_TOKENS]
    assert_close(got, want)


@pytest.mark.parametrize("threads", ["7", "1000"])
def test_block_sizes_that_do_not_divide_the_loops(threads, variant_checkpoints, reference_runs, tmp_path):
    ckpt = variant_checkpoints["sigmoid-groups-bias"]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", TILED, "--threads-per-block", threads)
    want, greedy = reference_runs(ckpt, PROMPT, NEW_TOKENS)
    tokens, got = run_artifact(artifact, ckpt, [PROMPT], NEW_TOKENS, tmp_path)
    assert tokens[0] == greedy[:NEW_TOKENS]
    assert_close(got, want)


def test_batch_of_two_unequal_prompts(variant_checkpoints, reference_runs, tmp_path):
    ckpt = variant_checkpoints["sigmoid-groups-bias"]
    artifact = compile_artifact(ckpt, tmp_path / "artifact", TILED, "--max-batch", "2")
    prompts = [PROMPT, PROMPT[:37][::-1]]
    tokens, _ = run_artifact(artifact, ckpt, prompts, NEW_TOKENS, tmp_path, logits=False)
    for prompt, generated in zip(prompts, tokens):
        _, greedy = reference_runs(ckpt, prompt, NEW_TOKENS)
        assert generated == greedy[:NEW_TOKENS]
