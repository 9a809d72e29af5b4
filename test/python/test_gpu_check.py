"""scripts/gpu-check.sh / bench/gpu_check.py without a GPU.

- The first half (prepare) for the GPU: the bundle holds the runtime, the generator, the golden data and one cuda
  artifact per case plus bench-450m with and without tensor cores (the A/B pair) and on CUDA cores with each
  KV-cache dtype, no MLIR/LLVM library, and fits the 64 MiB a device run carries.
- The second half's flow, on a CPU bundle (prepare --target cpu): it generates the bench checkpoint, checks the
  golden cases, runs the A/B rounds and prints one JSON with the measurements; a failing step is recorded there and
  the rest still runs.
- The kernel-level metrics from synthetic kernel times, against bytes and FLOPs worked out by hand.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "bench", "gpu_check.py")
BUILD = os.environ.get("DSV3_BUILD_DIR", os.path.join(ROOT, "build"))
CUDA_ROOT = os.environ.get("CUDA_ROOT", "/usr/local/cuda")

sys.path.insert(0, os.path.join(ROOT, "bench"))
import gpu_check  # noqa: E402


def prepare(out, *extra):
    done = subprocess.run([sys.executable, SCRIPT, "prepare", "--out", str(out), "--build", BUILD, *extra],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.load(open(os.path.join(out, "bundle.json")))


@pytest.mark.skipif(not os.path.exists(os.path.join(CUDA_ROOT, "bin", "ptxas")),
                    reason="GPU code generation needs ptxas from the CUDA toolkit")
def test_prepare_builds_a_complete_gpu_bundle(tmp_path):
    out = tmp_path / "bundle"
    info = prepare(out)
    assert info["target"] == "cuda" and info["chip"] == "sm_90a"
    assert info["bytes"] <= 64 << 20
    for case in gpu_check.GOLDEN_CASES + [gpu_check.BENCH]:
        # Each model with tensor cores, and again without (the bench A/B; the golden cases tell a tensor-core fault
        # from any other).
        for name, tensor_cores in [(case, True), (case + gpu_check.CUDA_CORES_SUFFIX, False)]:
            manifest = json.load(open(out / "artifacts" / name / "manifest.json"))
            assert manifest["target"]["kind"] == "cuda"
            assert manifest["target"]["tensor_cores"] is tensor_cores
            assert (out / "artifacts" / name / "libdsv3model.so").exists()
    # The CUDA-core bench with each KV-cache dtype (the attention bandwidth per dtype; fp8 is the packed i8 cache).
    for dtype, name in gpu_check.CACHE_DTYPE_ARTIFACTS.items():
        manifest = json.load(open(out / "artifacts" / name / "manifest.json"))
        assert manifest["target"]["tensor_cores"] is False
        cache = [i for i in manifest["inputs"] if i["name"] == "kv_cache"][0]
        assert cache["dtype"] == {"f32": "f32", "bf16": "bf16", "fp8": "i8"}[dtype]
    for case in gpu_check.GOLDEN_CASES:
        assert (out / "golden" / case / "golden.json").exists()
        # sm_90a's tensor-core tiles are wgmma; the mma.sync builds of the golden cases tell a wgmma fault apart.
        tiles = {name: json.load(open(out / "artifacts" / name / "manifest.json"))["target"]["mma"]
                 for name in [case, case + gpu_check.MMA_SYNC_SUFFIX]}
        assert tiles == {case: "wgmma.m64nNk16", case + gpu_check.MMA_SYNC_SUFFIX: "mma.sync.m16n8k16"}
    assert (out / "python" / "dsv3" / "generate_model.py").exists()
    assert (out / "gpu_check.py").exists()
    # Nothing of the compiler travels: no MLIR/LLVM library in the bundle or among dsv3-run's dependencies.
    names = [f for _, _, files in os.walk(out) for f in files]
    assert not [n for n in names if "MLIR" in n or "LLVM" in n]
    ldd = subprocess.run(["ldd", str(out / "bin" / "dsv3-run")], capture_output=True, text=True).stdout
    assert "libMLIR" not in ldd and "libLLVM" not in ldd


def test_run_half_on_a_cpu_bundle(tmp_path):
    out = tmp_path / "bundle"
    prepare(out, "--target", "cpu")
    result_path = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(out / "gpu_check.py"), "run", "--prompt-tokens", "16",
                           "--decode-tokens", "4", "--repeats", "1", "--json-out", str(result_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == json.load(open(result_path))
    assert report["golden_ok"]
    assert [g["case"] for g in report["golden"]] == gpu_check.GOLDEN_CASES
    for g in report["golden"]:
        assert g["tokens_identical"] and g["max_abs_logit_diff_over_max_logit"] <= gpu_check.GOLDEN_TOLERANCE
    assert [g["case"] for g in report["golden_cuda_cores"]] == gpu_check.GOLDEN_CASES
    for g in report["golden_cuda_cores"]:
        assert g["ok"] and g["max_abs_logit_diff_over_max_logit"] <= gpu_check.CUDA_CORE_TOLERANCE
    assert [g["case"] for g in report["golden_mma_sync"]] == gpu_check.GOLDEN_CASES
    assert all(g["ok"] for g in report["golden_mma_sync"])
    bench = report[gpu_check.BENCH]
    assert bench["decode_tokens_per_second"] > 0 and bench["prefill_64_tokens_per_second"] > 0
    assert bench["mla_decode_attention"] is None  # kernel times exist on the GPU only
    assert "attention_by_cache_dtype" not in bench
    # The side-by-side A/B ran (on the CPU both artifacts are the same code, so the ratios are ~1).
    other = bench["cuda_cores"]
    assert other["decode_tokens_per_second"] > 0 and 0.3 < other["decode_speedup"] < 3
    assert 0.3 < other["prefill_64_speedup"] < 3

    # A step that fails is reported in the JSON (exit 1) and the others still run: one GPU run says all it can.
    os.remove(out / "artifacts" / "tiny-v2lite" / "libdsv3model.so")
    done = subprocess.run([sys.executable, str(out / "gpu_check.py"), "run", "--prompt-tokens", "16",
                           "--decode-tokens", "4", "--repeats", "1"], capture_output=True, text=True)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    by_case = {g["case"]: g for g in report["golden"]}
    assert not by_case["tiny-v2lite"]["ok"]
    assert "the artifact's library does not exist" in by_case["tiny-v2lite"]["error"]
    assert by_case["tiny-v3"]["ok"] and by_case["tiny-v3-fp8"]["ok"]
    assert report[gpu_check.BENCH]["decode_tokens_per_second"] > 0


def test_kernel_metrics_by_hand():
    # hidden 8, 2 layers (1 MoE), kv_lora 4 + rope 2 -> cache rows of 6 f32; top-2 + 1 shared experts of width 3.
    manifest = {
        "config": {"num_hidden_layers": 2, "hidden_size": 8, "moe_intermediate_size": 3,
                   "num_experts_per_tok": 2, "n_shared_experts": 1},
        "inputs": [{"name": "kv_cache", "dtype": "f32", "shape": [2, 1, 64, 6]}],
        "weights": [{"role": "attn.wq_b", "dtype": "bf16", "shape": [2, 10, 5]},
                    {"role": "attn.norm", "dtype": "bf16", "shape": [2, 8]},
                    {"role": "moe.expert_gate", "dtype": "bf16", "shape": [1, 4, 3, 8]},
                    {"role": "lm_head", "dtype": "bf16", "shape": [32, 8]}],
        "prepared": [{"name": "attn.wq_kv_a", "dtype": "bf16", "shape": [2, 11, 8]}],
        "entry_points": {"decode": {"weights": ["attn.wq_b", "attn.norm", "attn.wq_kv_a", "lm_head"]}},
    }
    prefill = {"mla_0": {"launches": 2, "seconds": 1.0}, "moe_gate_up_0": {"launches": 1, "seconds": 0.5},
               "moe_down_combine_0": {"launches": 1, "seconds": 0.25}, "linear_0": {"launches": 1, "seconds": 9.0}}
    decode = dict(prefill, mla_0={"launches": 8, "seconds": 4.0})
    m = gpu_check.kernel_metrics(manifest, p=10, d=4, only_prefill=prefill, with_decode=decode, peak=1e9)
    # 3 decode steps at positions 10, 11, 12 read 11 + 12 + 13 = 36 rows of 6 f32 in each of 2 layers, plus the
    # attention weights once per step: (2*10*5 + 2*8 + 2*11*8) bf16 = 292 elements = 584 bytes.
    want_bytes = 36 * 6 * 4 * 2 + 3 * 584
    assert m["mla_decode_attention"]["bytes"] == want_bytes
    assert m["mla_decode_attention"]["seconds"] == pytest.approx(3.0)
    assert m["mla_decode_attention"]["fraction_of_peak"] == pytest.approx(want_bytes / 3.0 / 1e9)
    # 10 tokens x 3 experts x (gate + up + down = 3 * 2 * 8 * 3 FLOPs) x 1 MoE layer over 0.75 s.
    assert m["grouped_expert_gemm"]["flops"] == 10 * 3 * 144
    assert m["grouped_expert_gemm"]["tflops_per_second"] == pytest.approx(10 * 3 * 144 / 0.75 / 1e12)


def test_golden_comparison_allows_bf16_to_part_only_at_a_near_tie():
    import numpy as np
    want = np.array([[1.0, 0.999, 0.0], [0.0, 1.0, 0.5], [0.2, 0.0, 1.0]], dtype=np.float32)  # step 0: a near tie
    greedy = [0, 1]
    same = gpu_check.compare_with_golden([0, 1], want.copy(), greedy, want, 1e-2, allow_near_ties=False)
    assert same["ok"] and same["tokens_identical"] and same["steps_compared"] == 3
    # Rounding tips step 0 the other way (error 2e-3 >= half the 1e-3 margin): fine for bf16, not for f32 builds.
    tipped = want.copy()
    tipped[0, :2] = [0.9985, 0.9995]
    bf16 = gpu_check.compare_with_golden([1, 2], tipped, greedy, want, 1e-2, allow_near_ties=True)
    assert bf16["ok"] and bf16["parted_at_near_tie"] and bf16["steps_compared"] == 1
    assert not gpu_check.compare_with_golden([1, 2], tipped, greedy, want, 1e-2, allow_near_ties=False)["ok"]
    # Parting where the golden margin is wide is a fault, and so is a token that is not its row's argmax.
    wrong = want.copy()
    wrong[1] = [0.0, 0.49, 0.5]
    assert not gpu_check.compare_with_golden([0, 2], wrong, greedy, want, 1.0, allow_near_ties=True)["ok"]
    assert not gpu_check.compare_with_golden([0, 2], want.copy(), greedy, want, 1e-2, allow_near_ties=True)["ok"]
    # Logits beyond the tolerance fail on a shared trajectory.
    far = want.copy()
    far[2, 0] += 0.05
    assert not gpu_check.compare_with_golden([0, 1], far, greedy, want, 1e-2, allow_near_ties=True)["ok"]
