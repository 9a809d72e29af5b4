#!/usr/bin/env python3
"""The GPU check (docs/benchmarks.md, "GPU"), in two halves.

prepare (here, where the compiler is): compiles the golden cases and the bench-450m config for the GPU and gathers
everything needed to run them, and nothing of MLIR or LLVM, into one folder of at most 64 MiB:

    BUNDLE/bin/dsv3-run              the runtime's command-line host (links no MLIR/LLVM/CUDA)
    BUNDLE/lib/libdsv3rt.so          the runtime's C API (for the Python bindings)
    BUNDLE/python/dsv3/              the checkpoint generator and the bindings
    BUNDLE/golden/<case>/            the golden checkpoints with the official implementation's logits
    BUNDLE/artifacts/<case>/         the compiled artifacts (cubins inside libdsv3model.so)
    BUNDLE/artifacts/<name>-cuda-cores/   each again with --tensor-cores=false: the A/B of bench-450m, and
                                          golden cases that tell a tensor-core fault from any other
    BUNDLE/artifacts/<case>-mma-sync/     the golden cases again with --wgmma=false (16-row mma.sync tiles
                                          instead of sm_90a's 64-row wgmma): tells a wgmma fault apart
    BUNDLE/gpu_check.py, bundle.json this script and what the bundle holds

run (on the GPU machine: CUDA driver, numpy, no network, no compiler): generates the bench-450m checkpoint, runs
the golden cases (logits within GOLDEN_TOLERANCE * max|logit| and the golden greedy tokens -- a bf16 build may part
from them only at a near tie, see compare_with_golden --, also the mma.sync builds; the CUDA-core builds within
CUDA_CORE_TOLERANCE and identical tokens), measures decode and prefill
tokens/s of bench-450m, alternating round by round with the same model compiled without tensor cores (the ratios
are the tensor cores' speedup, measured side by side), the MLA decode attention bandwidth (its kernels' bytes over
their time, and as a fraction of the device's peak) and the grouped expert GEMM TFLOP/s (from per-kernel event
timings) of both, and prints one JSON.

    python3 bench/gpu_check.py prepare --out build/gpu-check [--chip sm_90a] [--target cuda]
    python3 build/gpu-check/gpu_check.py run [--prompt-tokens 512] [--decode-tokens 64]

`--target cpu` builds the same bundle for the CPU, so the run half's logic is tested here without a GPU
(test/python/test_gpu_check.py); the kernel-level numbers then are null.
scripts/gpu-check.sh wraps both halves.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_CASES = ["tiny-v3", "tiny-v2lite", "tiny-v3-fp8"]
BENCH = "bench-450m"
# Every model is also compiled with --tensor-cores=false (CUDA-core kernels in f32), under this suffix.
CUDA_CORES_SUFFIX = "-cuda-cores"
CUDA_CORES = BENCH + CUDA_CORES_SUFFIX  # the other side of the bench A/B
# The CUDA-core bench artifact with each KV-cache dtype (CUDA_CORES itself has the default bf16 cache): the MLA
# decode attention bandwidth per cache dtype. Tensor-core attention has no FP8 cache path yet.
CACHE_DTYPE_ARTIFACTS = {"f32": BENCH + "-cache-f32", "bf16": CUDA_CORES, "fp8": BENCH + "-cache-fp8"}
# The golden cases are also compiled with --wgmma=false under this suffix: on sm_90a the tensor-core tiles are then
# one warp's mma.sync (16 rows) instead of one warpgroup's wgmma (64 rows), the tiles' logic being the same; the
# pair tells a wgmma fault (descriptors, shared-memory layout, fences) from any other. On sm_80 both are mma.sync.
MMA_SYNC_SUFFIX = "-mma-sync"
MAX_BUNDLE_BYTES = 64 << 20
# The GPU computes the CPU's f32 math (with the GPU's exp/rsqrt and another summation order), except that the GEMMs
# with bf16 weights (linears but the router, the grouped expert GEMMs) and the absorbed attention run on tensor cores
# with bf16 operands (8 significant bits): that puts the golden logits 4e-3..8e-3 * max|logit| off on these models
# (measured on the same tiles compiled for the CPU, test_gpu_tiled_on_cpu.py). Allow 2e-2 * max|logit| (a few bf16
# ulps), and the golden greedy tokens up to a near tie (tiny-v3's first token: its two best logits are 2e-3 *
# max|logit| apart, so bf16 rounding may pick either).
GOLDEN_TOLERANCE = 2e-2
# Where the golden's two best logits are this close (relative to max|logit|; below the bf16 builds' measured error),
# bf16 rounding may pick either token, and the trajectories may part there.
NEAR_TIE = 5e-3
# The CUDA-core builds (--tensor-cores=false) compute in f32 like the CPU, with the GPU's exp/rsqrt and another
# summation order: half a bf16 ulp of the largest logit.
CUDA_CORE_TOLERANCE = 2.0 ** -9
# As in run_benchmark.py: this file travels alone in the bundle, so it imports nothing of bench/.
DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "f8e4m3": 1, "i8": 1, "i32": 4, "i64": 8}


def log(msg: str) -> None:
    print(f"gpu-check: {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    print(f"gpu-check: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


class StepFailed(Exception):
    """A command of the check failed; the run half records it in the JSON and goes on with the next step, so that
    one run on a borrowed GPU reports as much as it can."""


# One command of the run half may take this long: a kernel that hangs on the GPU (a barrier not all threads reach)
# then costs one step, not the whole check's time on a borrowed machine.
STEP_TIMEOUT_SECONDS = 120


def run(cmd: List[str], env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{os.path.basename(cmd[0])} did not finish within {timeout} s (killed)")
    if done.returncode != 0:
        raise StepFailed(f"{os.path.basename(cmd[0])} failed (exit {done.returncode}): "
                         f"{done.stderr.strip()[-2000:]}")
    return done.stdout


def tree_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


# ------------------------------------------------------------------------------------------------------------
# prepare
# ------------------------------------------------------------------------------------------------------------

def prepare(args: argparse.Namespace) -> int:
    repo = os.path.dirname(HERE)
    build = os.path.abspath(args.build or os.path.join(repo, "build"))
    compiler = os.path.join(build, "bin", "dsv3-compile")
    for tool in [compiler, os.path.join(build, "bin", "dsv3-run"), os.path.join(build, "lib", "libdsv3rt.so")]:
        if not os.path.exists(tool):
            die(f"{tool} is missing: build first (scripts/setup.sh)")
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    for d in ["bin", "lib", "golden", "artifacts"]:
        os.makedirs(os.path.join(out, d))
    shutil.copy2(os.path.join(build, "bin", "dsv3-run"), os.path.join(out, "bin"))
    shutil.copy2(os.path.join(build, "lib", "libdsv3rt.so"), os.path.join(out, "lib"))
    shutil.copytree(os.path.join(repo, "python", "dsv3"), os.path.join(out, "python", "dsv3"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(os.path.abspath(__file__), os.path.join(out, "gpu_check.py"))

    target = ["--target", "cuda", "--chip", args.chip] if args.target == "cuda" else ["--target", "cpu"]
    compile_seconds: Dict[str, float] = {}

    def compile_model(source: str, name: str, max_seq_len: int, *extra: str) -> None:
        start = time.time()
        run([compiler, source, "-o", os.path.join(out, "artifacts", name), "--max-seq-len", str(max_seq_len),
             *target, *extra])
        compile_seconds[name] = round(time.time() - start, 1)
        log(f"compiled {name} in {compile_seconds[name]} s")

    golden_root = os.path.join(repo, "test", "data", "golden")
    for case in GOLDEN_CASES:
        shutil.copytree(os.path.join(golden_root, case), os.path.join(out, "golden", case))
        compile_model(os.path.join(out, "golden", case), case, 64)
        # With an f32 KV cache, so that the f32 kernels are held to CUDA_CORE_TOLERANCE (the default bf16 cache
        # rounds every entry: a few 1e-3 from golden; the tensor-core builds take the cache as bf16 operands either
        # way, so theirs is bitwise the same with either cache type).
        compile_model(os.path.join(out, "golden", case), case + CUDA_CORES_SUFFIX, 64, "--tensor-cores=false",
                      "--kv-cache-dtype=f32")
        compile_model(os.path.join(out, "golden", case), case + MMA_SYNC_SUFFIX, 64, "--wgmma=false")

    env = dict(os.environ, PYTHONPATH=os.path.join(repo, "python"))
    with tempfile.TemporaryDirectory() as tmp:
        run([sys.executable, "-m", "dsv3.generate_model", "--preset", BENCH, "--out", tmp, "--config-only"], env=env)
        shutil.copy2(os.path.join(tmp, "config.json"), os.path.join(out, f"{BENCH}-config.json"))
    compile_model(os.path.join(out, f"{BENCH}-config.json"), BENCH, args.bench_max_seq_len)
    # (For --target cpu the option changes nothing: the A/B logic is still exercised, at a ratio of ~1.)
    compile_model(os.path.join(out, f"{BENCH}-config.json"), CUDA_CORES, args.bench_max_seq_len,
                  "--tensor-cores=false")
    for dtype, name in CACHE_DTYPE_ARTIFACTS.items():
        if name != CUDA_CORES:
            compile_model(os.path.join(out, f"{BENCH}-config.json"), name, args.bench_max_seq_len,
                          "--tensor-cores=false", f"--kv-cache-dtype={dtype}")

    size = tree_bytes(out)
    bundle = {"target": args.target, "chip": args.chip if args.target == "cuda" else None,
              "golden_cases": GOLDEN_CASES, "bench": BENCH, "bench_max_seq_len": args.bench_max_seq_len,
              "compile_seconds": compile_seconds, "bytes": size}
    with open(os.path.join(out, "bundle.json"), "w", encoding="utf-8") as f:
        json.dump(bundle, f, indent=1)
    if size > MAX_BUNDLE_BYTES:
        die(f"the bundle is {size / 2**20:.1f} MiB, over the {MAX_BUNDLE_BYTES >> 20} MiB a device run carries")
    log(f"bundle ready: {out} ({size / 2**20:.1f} MiB)")
    return 0


# ------------------------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------------------------

class Runner:
    def __init__(self, bundle: str, device: str):
        self.exe = os.path.join(bundle, "bin", "dsv3-run")
        self.device = device

    def __call__(self, artifact: str, ckpt: str, tokens: List[int], new_tokens: int, tmp: str,
                 logits: bool = False, kernel_times: bool = False) -> Dict[str, Any]:
        stats = os.path.join(tmp, "stats.json")
        cmd = [self.exe, artifact, "--weights", ckpt, "--device", self.device, "--tokens",
               ",".join(map(str, tokens)), "--max-new-tokens", str(new_tokens), "--ignore-eos", "--stats-out", stats]
        if logits:
            cmd += ["--logits-out", os.path.join(tmp, "logits.npy")]
        if kernel_times:
            cmd += ["--kernel-times-out", os.path.join(tmp, "kernels.json")]
        run(cmd, timeout=STEP_TIMEOUT_SECONDS)
        with open(stats, encoding="utf-8") as f:
            result = json.load(f)
        if kernel_times:
            with open(os.path.join(tmp, "kernels.json"), encoding="utf-8") as f:
                result["kernels"] = json.load(f)
        return result


def check_golden(bundle: str, runner: Runner, tmp: str, suffix: str = "",
                 tolerance: float = GOLDEN_TOLERANCE) -> List[Dict[str, Any]]:
    """The golden cases on the artifacts <case><suffix> (if the bundle has them)."""
    import numpy as np
    results = []
    for case in GOLDEN_CASES:
        ckpt = os.path.join(bundle, "golden", case)
        artifact = os.path.join(bundle, "artifacts", case + suffix)
        if suffix and not os.path.isdir(artifact):
            continue
        with open(os.path.join(ckpt, "golden.json"), encoding="utf-8") as f:
            golden = json.load(f)
        want = np.load(os.path.join(ckpt, golden["logits"]))
        n = golden["max_new_tokens"]
        try:
            stats = runner(artifact, ckpt, golden["tokens"], n, tmp, logits=True)
        except StepFailed as e:
            results.append({"case": case, "ok": False, "error": str(e)})
            log(f"golden {case}{suffix}: FAILED ({e})")
            continue
        got = np.load(os.path.join(tmp, "logits.npy"))
        # Exact f32 builds must follow the golden tokens everywhere; bf16 ones may part at a near tie.
        result = compare_with_golden(stats["generated_tokens"][0], got, golden["greedy_tokens"][:n], want,
                                     tolerance, allow_near_ties=tolerance > CUDA_CORE_TOLERANCE)
        results.append({"case": case, **result})
        log(f"golden {case}{suffix}: {'ok' if result['ok'] else 'FAILED'} "
            f"(rel {result['max_abs_logit_diff_over_max_logit']:.2e}, tokens "
            f"{'=' if result['tokens_identical'] else '!= from step ' + str(result['steps_compared'] - 1)})")
    return results


def compare_with_golden(generated: List[int], got, greedy: List[int], want, tolerance: float,
                        allow_near_ties: bool) -> Dict[str, Any]:
    """Logits row i (after the prompt and the first i generated tokens) against the golden row i, step by step.
    Every compared row must be within tolerance * max|golden logit| and its token the row's argmax. The generated
    tokens must be the golden ones -- except, with allow_near_ties (bf16 operands), at a step where the golden's two
    best logits are within NEAR_TIE * max|logit| and twice the logit error there: rounding may pick the other one,
    as any bf16 implementation may. The sequences then continue from different tokens, so the comparison stops after that step."""
    import numpy as np
    scale = float(np.abs(want).max())
    rows = min(len(got), len(want))
    rel, compared, ok = 0.0, 0, got.shape[1:] == want.shape[1:] and len(generated) == len(greedy)
    near_tie = False
    for i in range(rows if ok else 0):
        error = float(np.abs(got[i] - want[i]).max())
        rel = max(rel, error / scale)
        compared = i + 1
        if i >= len(generated) or error / scale > tolerance:
            ok = ok and error / scale <= tolerance
            break
        if generated[i] != int(got[i].argmax()):
            ok = False
            break
        if generated[i] != greedy[i]:
            top2 = np.sort(want[i])[-2:]
            margin = float(top2[1] - top2[0])
            near_tie = allow_near_ties and margin <= min(2 * error, NEAR_TIE * scale)
            ok = near_tie
            break
    return {"ok": bool(ok and compared > 0), "tokens_identical": generated == greedy, "steps_compared": compared,
            "parted_at_near_tie": near_tie, "max_abs_logit_diff_over_max_logit": rel, "tolerance": tolerance}


def kernel_seconds(kernels: Dict[str, Dict[str, float]], prefixes: List[str]) -> float:
    return sum(t["seconds"] for name, t in kernels.items() if any(name.startswith(p) for p in prefixes))


def mla_bytes_per_step(manifest: Dict[str, Any]) -> float:
    """Bytes of MLA weights one decode step reads (every attn.* weight the forward pass takes, once)."""
    shapes = {w["role"]: (w["dtype"], w["shape"]) for w in manifest["weights"]}
    shapes.update({p["name"]: (p["dtype"], p["shape"]) for p in manifest.get("prepared") or []})
    total = 0.0
    for role in manifest["entry_points"]["decode"]["weights"]:
        if role.startswith("attn."):
            dtype, shape = shapes[role]
            n = 1
            for d in shape:
                n *= d
            total += n * DTYPE_BYTES[dtype]
    return total


def kernel_metrics(manifest: Dict[str, Any], p: int, d: int, only_prefill: Dict[str, Dict[str, float]],
                   with_decode: Dict[str, Dict[str, float]], peak: float) -> Dict[str, Any]:
    """MLA decode attention bandwidth and grouped expert GEMM TFLOP/s from the kernel times of a P-token prefill
    alone and of the same prefill followed by D new tokens (kernels are named after their dsv3 op)."""
    cfg = manifest["config"]
    # With D new tokens the first comes from the prefill; D - 1 decode steps feed positions P .. P + D - 2, and the
    # step at position t reads t + 1 cache rows of every layer.
    steps = d - 1
    layers = cfg["num_hidden_layers"]
    cache = next(i for i in manifest["inputs"] if i["name"] == "kv_cache")
    width = cache["shape"][-1]
    cache_bytes = sum((t + 1) * width * DTYPE_BYTES[cache["dtype"]] * layers for t in range(p, p + steps))
    mla_bytes = steps * mla_bytes_per_step(manifest) + cache_bytes
    mla_seconds = kernel_seconds(with_decode, ["mla_"]) - kernel_seconds(only_prefill, ["mla_"])
    out: Dict[str, Any] = {"mla_decode_attention": None, "grouped_expert_gemm": None}
    if mla_seconds > 0:
        bandwidth = mla_bytes / mla_seconds
        out["mla_decode_attention"] = {
            "decode_steps": steps, "context": [p + 1, p + steps], "bytes": mla_bytes, "seconds": mla_seconds,
            "bandwidth_gb_per_second": bandwidth / 1e9, "fraction_of_peak": bandwidth / peak if peak else None}
    # Every token runs top-k routed + the shared experts: gate and up (2 * H * I each) and down (2 * I * H).
    experts = (cfg.get("num_experts_per_tok") or 0) + (cfg.get("n_shared_experts") or 0)
    moe_layers = next((w["shape"][0] for w in manifest["weights"] if w["role"] == "moe.expert_gate"), 0)
    flops = 2.0 * 3 * cfg["hidden_size"] * cfg["moe_intermediate_size"] * experts * moe_layers * p
    gemm_seconds = kernel_seconds(only_prefill, ["moe_gate_up_", "moe_down_combine_"])
    if gemm_seconds > 0:
        out["grouped_expert_gemm"] = {"tokens": p, "flops": flops, "seconds": gemm_seconds,
                                      "tflops_per_second": flops / gemm_seconds / 1e12}
    return out


def measure_bench(bundle: str, runner: Runner, args: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    artifact = os.path.join(bundle, "artifacts", BENCH)
    with open(os.path.join(artifact, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    cfg = manifest["config"]
    ckpt = os.path.join(tmp, "bench-ckpt")
    start = time.time()
    env = dict(os.environ, PYTHONPATH=os.path.join(bundle, "python"))
    run([sys.executable, "-m", "dsv3.generate_model", "--preset", BENCH, "--out", ckpt, "--seed", "0"], env=env)
    generate_seconds = time.time() - start
    log(f"generated the {BENCH} checkpoint in {generate_seconds:.1f} s")

    vocab = cfg["vocab_size"]
    prompt64 = [(7 * i + 3) % (vocab - 2) + 2 for i in range(64)]
    # Rounds alternate between the tensor-core artifact and the CUDA-core one, so that each ratio compares two runs
    # taken back to back under the same conditions.
    cuda_cores = os.path.join(bundle, "artifacts", CUDA_CORES)
    rounds, other_rounds = [], []
    for _ in range(args.repeats):
        rounds.append(runner(artifact, ckpt, prompt64, args.decode_tokens, tmp))
        if os.path.isdir(cuda_cores):
            other_rounds.append(runner(cuda_cores, ckpt, prompt64, args.decode_tokens, tmp))
    decode = statistics.median(r["decode_tokens_per_second"] for r in rounds)
    prefill = statistics.median(r["prefill_tokens_per_second"] for r in rounds)
    log(f"{BENCH}: decode {decode:.1f} tok/s, prefill-64 {prefill:.1f} tok/s")
    result: Dict[str, Any] = {
        "checkpoint_generate_seconds": round(generate_seconds, 1),
        "decode_tokens_per_second": decode, "prefill_64_tokens_per_second": prefill,
        "decode_rounds": [r["decode_tokens_per_second"] for r in rounds],
        "gpu_name": rounds[0].get("gpu_name"),
        "gpu_peak_bandwidth_bytes_per_second": rounds[0].get("gpu_peak_bandwidth_bytes_per_second"),
        "mla_decode_attention": None, "grouped_expert_gemm": None,
        "cuda_cores": None,
    }
    if other_rounds:
        result["cuda_cores"] = side_by_side(rounds, other_rounds)
        log(f"{CUDA_CORES}: decode {result['cuda_cores']['decode_tokens_per_second']:.1f} tok/s; tensor cores "
            f"{result['cuda_cores']['decode_speedup']:.2f}x decode, "
            f"{result['cuda_cores']['prefill_64_speedup']:.2f}x prefill-64")
    if runner.device != "cuda":
        return result
    if time.time() - args.started > args.kernel_timing_deadline:
        result["kernel_timing_error"] = "skipped: the check is near its time limit"
        return result

    # Per-kernel times: prefill alone (P tokens), then prefill + decode; the difference is the decode.
    p, d = args.prompt_tokens, args.decode_tokens
    prompt = [(11 * i + 5) % (vocab - 2) + 2 for i in range(p)]
    try:
        only_prefill = runner(artifact, ckpt, prompt, 0, tmp, kernel_times=True)["kernels"]
        with_decode = runner(artifact, ckpt, prompt, d, tmp, kernel_times=True)["kernels"]
    except StepFailed as e:
        result["kernel_timing_error"] = str(e)
        return result
    peak = result["gpu_peak_bandwidth_bytes_per_second"] or 0
    result.update(kernel_metrics(manifest, p, d, only_prefill, with_decode, peak))
    result["kernel_seconds_prefill"] = {k: v["seconds"] for k, v in sorted(only_prefill.items())}
    if result["cuda_cores"] is not None and time.time() - args.started <= args.kernel_timing_deadline:
        try:
            only_prefill = runner(cuda_cores, ckpt, prompt, 0, tmp, kernel_times=True)["kernels"]
            with_decode = runner(cuda_cores, ckpt, prompt, d, tmp, kernel_times=True)["kernels"]
            result["cuda_cores"].update(kernel_metrics(manifest, p, d, only_prefill, with_decode, peak))
        except StepFailed as e:
            result["cuda_cores"]["kernel_timing_error"] = str(e)
    result["attention_by_cache_dtype"] = attention_by_cache_dtype(bundle, runner, args, ckpt, prompt, peak, tmp)
    return result


def attention_by_cache_dtype(bundle: str, runner: Runner, args: argparse.Namespace, ckpt: str, prompt: List[int],
                             peak: float, tmp: str) -> Dict[str, Any]:
    """MLA decode attention bandwidth of the CUDA-core bench artifact with each KV-cache dtype (its bytes count the
    cache as stored: 4, 2 or the packed FP8 row's bytes per element of width)."""
    out: Dict[str, Any] = {}
    d = args.decode_tokens
    for dtype, name in CACHE_DTYPE_ARTIFACTS.items():
        artifact = os.path.join(bundle, "artifacts", name)
        if not os.path.isdir(artifact):
            continue
        if time.time() - args.started > args.kernel_timing_deadline:
            out[dtype] = {"error": "skipped: the check is near its time limit"}
            continue
        with open(os.path.join(artifact, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        try:
            only_prefill = runner(artifact, ckpt, prompt, 0, tmp, kernel_times=True)["kernels"]
            with_decode = runner(artifact, ckpt, prompt, d, tmp, kernel_times=True)
        except StepFailed as e:
            out[dtype] = {"error": str(e)}
            continue
        metrics = kernel_metrics(manifest, len(prompt), d, only_prefill, with_decode["kernels"], peak)
        out[dtype] = {"mla_decode_attention": metrics["mla_decode_attention"],
                      "decode_tokens_per_second": with_decode["decode_tokens_per_second"]}
        log(f"{name}: MLA decode attention {metrics['mla_decode_attention']}")
    return out


def side_by_side(rounds: List[Dict[str, Any]], other_rounds: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The CUDA-core artifact's rates and the tensor cores' speedup over it: the median of the per-pair ratios
    (each pair ran back to back)."""
    def median_ratio(key: str) -> float:
        return statistics.median(a[key] / b[key] for a, b in zip(rounds, other_rounds) if b[key])
    return {
        "decode_tokens_per_second": statistics.median(r["decode_tokens_per_second"] for r in other_rounds),
        "prefill_64_tokens_per_second": statistics.median(r["prefill_tokens_per_second"] for r in other_rounds),
        "decode_speedup": median_ratio("decode_tokens_per_second"),
        "prefill_64_speedup": median_ratio("prefill_tokens_per_second"),
        "mla_decode_attention": None, "grouped_expert_gemm": None,
    }


def run_check(args: argparse.Namespace) -> int:
    start = time.time()
    bundle = os.path.abspath(args.bundle)
    with open(os.path.join(bundle, "bundle.json"), encoding="utf-8") as f:
        info = json.load(f)
    runner = Runner(bundle, "cuda" if info["target"] == "cuda" else "cpu")
    args.started = start
    with tempfile.TemporaryDirectory() as tmp:
        golden = check_golden(bundle, runner, tmp)
        golden_cuda_cores = check_golden(bundle, runner, tmp, CUDA_CORES_SUFFIX, CUDA_CORE_TOLERANCE)
        golden_mma_sync = check_golden(bundle, runner, tmp, MMA_SYNC_SUFFIX)
        try:
            bench = measure_bench(bundle, runner, args, tmp)
        except StepFailed as e:
            bench = {"error": str(e)}
    report = {"target": info["target"], "chip": info["chip"], "golden": golden,
              "golden_cuda_cores": golden_cuda_cores, "golden_mma_sync": golden_mma_sync,
              "golden_ok": all(g["ok"] for g in golden + golden_cuda_cores + golden_mma_sync), BENCH: bench,
              "seconds": round(time.time() - start, 1)}
    text = json.dumps(report, indent=1)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0 if report["golden_ok"] and "error" not in bench else 1


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="compile and gather the bundle (needs the compiler)")
    p.add_argument("--out", required=True)
    p.add_argument("--build", help="build directory (default: build/ of this repository)")
    p.add_argument("--target", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--chip", choices=["sm_90a", "sm_80"], default="sm_90a")
    p.add_argument("--bench-max-seq-len", type=int, default=1024)
    r = sub.add_parser("run", help="run the bundle (on the GPU machine)")
    r.add_argument("--bundle", default=HERE)
    r.add_argument("--prompt-tokens", type=int, default=512)
    r.add_argument("--decode-tokens", type=int, default=64)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--json-out")
    r.add_argument("--kernel-timing-deadline", type=float, default=360.0,
                   help="seconds into the check after which the kernel timings are skipped (the check has 480)")
    args = ap.parse_args(argv)
    if args.command == "prepare":
        try:
            return prepare(args)
        except StepFailed as e:
            die(str(e))
    if args.decode_tokens < 2 or args.prompt_tokens < 1 or args.repeats < 1:
        die("--decode-tokens must be >= 2, --prompt-tokens and --repeats >= 1")
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
