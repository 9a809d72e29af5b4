#!/usr/bin/python3
"""Decode/prefill benchmark of the bench-450m model against the memory-bandwidth bound.

    PYTHONPATH=python /usr/bin/python3 bench/run_benchmark.py [--out out/bench] [--build build]
        [--decode-tokens 64] [--repeats 3] [--threads all] [--max-seq-len 256]

Steps (docs/benchmarks.md explains the numbers):
  1. generate the bench-450m bf16 checkpoint into OUT/ckpt (reused when OUT/ckpt/config.json exists);
  2. compile it with dsv3-compile into OUT/artifact (every run; the compile time is printed);
  3. compile bench/membw.c into OUT/membw;
  4. one unmeasured warm-up run, then R rounds of: memory read bandwidth at T threads (membw), at 1 thread (for
     information), dsv3-run with a 64-token prompt (ids 2..65) --max-new-tokens N --threads T --ignore-eos
     --stats-out, and bandwidth at T threads again, so every model run has a bandwidth measurement just before
     and just after it.  Before each round the script waits (up to --wait-idle s) for idle CPUs; a round during
     which other processes used more than --clean-threshold of the CPUs is recorded but replaced by an extra
     round (at most --retries in all): on a shared 2-core machine one busy neighbour halves a 2-thread run;
  5. bytes of weights read per decode token from OUT/artifact/manifest.json, the decode bound
     (bandwidth / bytes per token) and the efficiency (decode tok/s / bound); medians over the rounds, plus
     the median of the per-round ratios (each run against the bandwidth measured around it);
  6. a table on stdout and OUT/benchmark.json with every number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = "bench-450m"
PROMPT_LEN = 64
SEED = 0

DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "f8e4m3": 1, "i8": 1, "i32": 4, "i64": 8}


def log(msg: str) -> None:
    print(msg, flush=True)


def die(msg: str) -> None:
    print(f"run_benchmark: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(cmd: List[str], what: str, env: Optional[Dict[str, str]] = None, capture: bool = True) -> str:
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE, text=True,
                           env=env, check=False)
    except OSError as e:
        die(f"{what}: cannot run {cmd[0]}: {e}")
    if p.returncode != 0:
        die(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()}")
    return p.stdout or ""


def loadavg() -> Optional[float]:
    """1-minute load average (this benchmark's own threads included): a hint of how shared the machine was."""
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_times() -> Optional[List[int]]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return [total - idle, total]


class OthersCpu:
    """Share of the machine's CPU time used by processes other than this script's children, between start()
    and stop(): (all CPUs' busy time - children's CPU time) / (wall time * CPUs).  0 = the run had the machine
    to itself; 0.5 on 2 CPUs = another process took a whole core."""

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = _cpu_times()
        r = os.times()
        self.child0 = r.children_user + r.children_system

    def stop(self) -> Optional[float]:
        c1 = _cpu_times()
        wall = time.monotonic() - self.t0
        r = os.times()
        child = r.children_user + r.children_system - self.child0
        if self.c0 is None or c1 is None or wall <= 0:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        busy = (c1[0] - self.c0[0]) / hz
        ncpu = (c1[1] - self.c0[1]) / hz / wall  # CPUs as /proc/stat counts them
        return max(0.0, min(1.0, (busy - child) / (wall * max(ncpu, 1e-9))))


def wait_for_idle(max_wait: float, threshold: float = 0.25, window: float = 0.5,
                  windows: int = 3) -> Dict[str, float]:
    """Waits (up to max_wait seconds) until the CPUs were less than `threshold` busy in `windows` consecutive
    `window`-second samples while this script runs nothing.  Returns the last busy fraction seen and the seconds
    waited."""
    t0 = time.monotonic()
    quiet = 0
    while True:
        a = _cpu_times()
        time.sleep(window)
        b = _cpu_times()
        if a is None or b is None or b[1] == a[1]:
            return {"busy": float("nan"), "waited_s": time.monotonic() - t0}
        busy = (b[0] - a[0]) / (b[1] - a[1])
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= windows or time.monotonic() - t0 >= max_wait:
            return {"busy": busy, "waited_s": time.monotonic() - t0}


def measured(fn):
    """(fn(), share of the CPUs other processes used while it ran)."""
    o = OthersCpu()
    o.start()
    value = fn()
    return value, o.stop()


def median(xs: List[float]) -> float:
    return float(statistics.median(xs))


# ------------------------------------------------------------------------------------------------------------
# bytes per token
# ------------------------------------------------------------------------------------------------------------

def weight_bytes_per_token(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Bytes of weights one decode token reads (batch 1), from the artifact's weight list.

    Every weight is read once per token, except the embedding table (one row: hidden * dtype bytes) and the
    routed expert stacks (roles "moe.expert_*": only num_experts_per_tok / n_routed_experts of each stack).
    lm_head (the final logits) is read fully."""
    cfg = manifest["config"]
    k = cfg.get("num_experts_per_tok") or 0
    e = cfg.get("n_routed_experts") or 0
    hidden = cfg["hidden_size"]
    total_stored = 0
    per_token = 0.0
    by_role: List[Dict[str, Any]] = []
    for w in manifest["weights"]:
        dtype = w["dtype"]
        if dtype not in DTYPE_BYTES:
            die(f"manifest weight {w['role']}: unknown dtype {dtype!r}")
        n = 1
        for d in w["shape"]:
            n *= d
        stored = n * DTYPE_BYTES[dtype]
        role = w["role"]
        if role == "embed":
            read = float(hidden * DTYPE_BYTES[dtype])
            rule = "one row"
        elif role.startswith("moe.expert_"):
            if not e or w.get("experts") != e:
                die(f"manifest weight {role}: experts={w.get('experts')} but config n_routed_experts={e}")
            read = stored * k / e
            rule = f"{k}/{e} of the experts"
        else:
            read = float(stored)
            rule = "all"
        total_stored += stored
        per_token += read
        by_role.append({"role": role, "dtype": dtype, "shape": w["shape"], "stored_bytes": stored,
                        "read_bytes_per_token": read, "rule": rule})
    return {"weights_stored_bytes": total_stored, "weights_read_bytes_per_token": per_token, "by_role": by_role}


def kv_bytes_per_context_position(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """KV-cache bytes per position of context of one sequence: L * W * dtype bytes ([L, B, T, W] cache)."""
    for inp in manifest["inputs"]:
        if inp["name"] == "kv_cache":
            layers, batch, seq, width = inp["shape"]
            per_pos = layers * width * DTYPE_BYTES[inp["dtype"]]
            return {"shape": inp["shape"], "dtype": inp["dtype"], "bytes_per_position": per_pos,
                    "bytes_full_row": per_pos * seq}
    die("manifest has no kv_cache input")
    return {}


# ------------------------------------------------------------------------------------------------------------
# machine info
# ------------------------------------------------------------------------------------------------------------

def machine_info(threads: int) -> Dict[str, Any]:
    cpu_model = None
    flags: List[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name" and cpu_model is None:
                    cpu_model = val.strip()
                elif key == "flags" and not flags:
                    flags = val.split()
    except OSError:
        pass
    mem_total = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    commit = None
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, check=False).stdout.strip() or None
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "mem_total_bytes": mem_total,
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "git_commit": commit,
        "threads": threads,
    }


# ------------------------------------------------------------------------------------------------------------
# steps
# ------------------------------------------------------------------------------------------------------------

def ensure_checkpoint(ckpt: str) -> float:
    """Generates the checkpoint unless OUT/ckpt/config.json exists; returns the seconds spent (0 if reused)."""
    if os.path.isfile(os.path.join(ckpt, "config.json")):
        log(f"checkpoint: reusing {ckpt}")
        return 0.0
    tmp = ckpt + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(REPO, "python") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log(f"checkpoint: generating {PRESET} bf16 (seed {SEED}) into {ckpt} ...")
    t0 = time.monotonic()
    run([sys.executable, "-m", "dsv3.generate_model", "--preset", PRESET, "--out", tmp, "--seed", str(SEED),
         "--dtype", "bf16"], "checkpoint generation", env=env)
    # Generated into ckpt.tmp and renamed, so an interrupted generation is never taken for a checkpoint.
    shutil.rmtree(ckpt, ignore_errors=True)
    os.rename(tmp, ckpt)
    dt = time.monotonic() - t0
    log(f"checkpoint: generated in {dt:.1f} s")
    return dt


def compile_artifact(compiler: str, ckpt: str, artifact: str, max_seq_len: int) -> float:
    shutil.rmtree(artifact, ignore_errors=True)
    t0 = time.monotonic()
    run([compiler, ckpt, "-o", artifact, f"--max-seq-len={max_seq_len}", "--max-batch=1"], "dsv3-compile")
    dt = time.monotonic() - t0
    log(f"compile: dsv3-compile {ckpt} -> {artifact}: {dt:.2f} s")
    return dt


def build_membw(out: str) -> Dict[str, str]:
    src = os.path.join(REPO, "bench", "membw.c")
    exe = os.path.join(out, "membw")
    cc = shutil.which("clang-22") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        die("no C compiler (clang-22 or cc) on PATH")
    cmd = [cc, "-O2", "-march=native", "-pthread", src, "-o", exe]
    run(cmd, "building membw")
    return {"exe": exe, "cc": cc, "cmd": " ".join(cmd)}


def membw(exe: str, threads: int) -> Dict[str, Any]:
    return json.loads(run([exe, "--threads", str(threads)], f"membw --threads {threads}"))


def run_model(runner: str, artifact: str, ckpt: str, tokens: List[int], new_tokens: int, threads: int,
              stats_path: str) -> Dict[str, Any]:
    if os.path.exists(stats_path):
        os.remove(stats_path)
    run([runner, artifact, "--weights", ckpt, "--tokens", ",".join(map(str, tokens)),
         "--max-new-tokens", str(new_tokens), "--threads", str(threads), "--ignore-eos",
         "--stats-out", stats_path], "dsv3-run")
    with open(stats_path, encoding="utf-8") as f:
        s = json.load(f)
    if s["prefill_tokens"] != len(tokens) or s["prefill_calls"] != 1:
        die(f"unexpected prefill in stats: {s['prefill_tokens']} tokens, {s['prefill_calls']} calls")
    if s["decode_tokens"] <= 0 or s["decode_seconds"] <= 0:
        die("dsv3-run decoded no tokens (use --decode-tokens >= 2)")
    s.pop("generated_tokens", None)
    return s


# ------------------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------------------

def round_numbers(rounds: List[Dict[str, Any]], repeats: int, retries: int, logger=None):
    """Yields the number of the next round to run while fewer than `repeats` of `rounds` are clean (each round is
    a dict with a "clean" flag, appended by the caller), allowing at most `retries` rounds beyond `repeats`."""
    logger = logger or log
    extra = 0
    while True:
        clean = sum(1 for r in rounds if r["clean"])
        if clean >= repeats or (len(rounds) >= repeats and extra >= retries):
            return
        if len(rounds) >= repeats:
            extra += 1
        logger(f"round {len(rounds) + 1} ({clean}/{repeats} clean so far)")
        yield len(rounds) + 1


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "out", "bench"), help="output directory (out/bench)")
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="build directory with bin/ (build)")
    ap.add_argument("--decode-tokens", type=int, default=64, help="--max-new-tokens of each run (64)")
    ap.add_argument("--repeats", type=int, default=3, help="measured rounds; medians are reported (3)")
    ap.add_argument("--threads", type=int, default=0, help="threads for the model and membw (0: all CPUs)")
    ap.add_argument("--max-seq-len", type=int, default=256, help="artifact KV-cache positions (256)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured model runs before the rounds (1)")
    ap.add_argument("--wait-idle", type=float, default=30.0,
                    help="before each round, wait up to this many seconds for the CPUs to be < 25%% busy "
                         "(shared machines; 0: do not wait) (30)")
    ap.add_argument("--clean-threshold", type=float, default=0.10,
                    help="a round counts only if other processes used at most this share of the CPUs (0.10)")
    ap.add_argument("--retries", type=int, default=6,
                    help="extra rounds, in all, to replace rounds disturbed by other processes (6)")
    args = ap.parse_args(argv)

    threads = args.threads if args.threads > 0 else len(os.sched_getaffinity(0))
    if args.decode_tokens < 2:
        die("--decode-tokens must be >= 2 (the first generated token comes from prefill)")
    if args.repeats < 1:
        die("--repeats must be >= 1")
    if PROMPT_LEN + args.decode_tokens > args.max_seq_len:
        die(f"prompt ({PROMPT_LEN}) + --decode-tokens ({args.decode_tokens}) exceeds --max-seq-len "
            f"({args.max_seq_len})")
    out = os.path.abspath(args.out)
    bindir = os.path.join(os.path.abspath(args.build), "bin")
    compiler = os.path.join(bindir, "dsv3-compile")
    runner = os.path.join(bindir, "dsv3-run")
    for tool in (compiler, runner):
        if not os.access(tool, os.X_OK):
            die(f"{tool} not found (build the project or pass --build)")
    os.makedirs(out, exist_ok=True)
    ckpt = os.path.join(out, "ckpt")
    artifact = os.path.join(out, "artifact")
    started = time.monotonic()
    info = machine_info(threads)
    log(f"machine: {info['cpu_model']}, {info['nproc']} CPUs, threads {threads}, {info['date']}")

    gen_seconds = ensure_checkpoint(ckpt)
    compile_seconds = compile_artifact(compiler, ckpt, artifact, args.max_seq_len)
    mb = build_membw(out)

    with open(os.path.join(artifact, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    wb = weight_bytes_per_token(manifest)
    kv = kv_bytes_per_context_position(manifest)
    bytes_per_token = wb["weights_read_bytes_per_token"]

    tokens = list(range(2, 2 + PROMPT_LEN))
    vocab = manifest["config"]["vocab_size"]
    assert max(tokens) < vocab
    stats_path = os.path.join(out, "stats.json")

    for i in range(args.warmup):
        log(f"warm-up run {i + 1}/{args.warmup}")
        run_model(runner, artifact, ckpt, tokens, args.decode_tokens, threads, stats_path)

    # Rounds: bandwidth (T threads), bandwidth (1 thread), model, bandwidth (T threads).  Each run is compared with
    # the T-thread bandwidth measured just before and just after it.  A round in which other processes took more
    # than --clean-threshold of the CPUs (during the model run or a T-thread bandwidth measurement) is kept in
    # benchmark.json but replaced by an extra round, at most --retries times in all.
    rounds: List[Dict[str, Any]] = []
    for _ in round_numbers(rounds, args.repeats, args.retries):
        idle = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else {"busy": None, "waited_s": 0.0}
        if idle["waited_s"] > 2:
            log(f"  waited {idle['waited_s']:.0f} s for idle CPUs (last {100 * idle['busy']:.0f} % busy)")
        load_before = loadavg()
        bw_before, sh_before = measured(lambda: membw(mb["exe"], threads))
        bw_one = membw(mb["exe"], 1) if threads != 1 else bw_before
        s, sh_model = measured(lambda: run_model(runner, artifact, ckpt, tokens, args.decode_tokens, threads,
                                                 stats_path))
        bw_after, sh_after = measured(lambda: membw(mb["exe"], threads))
        shares = [x for x in (sh_before, sh_model, sh_after) if x is not None]
        others = max(shares) if shares else None
        bw_around = 0.5 * (bw_before["median_gbps"] + bw_after["median_gbps"])
        bound_r = bw_around * 1e9 / bytes_per_token
        r = {
            "prefill_tokens_per_second": s["prefill_tokens_per_second"],
            "decode_tokens_per_second": s["decode_tokens_per_second"],
            "bandwidth_before_gbps": bw_before["median_gbps"],
            "bandwidth_after_gbps": bw_after["median_gbps"],
            "bandwidth_around_gbps": bw_around,
            "bandwidth_best_pass_gbps": max(bw_before["best_gbps"], bw_after["best_gbps"]),
            "bandwidth_1thread_gbps": bw_one["median_gbps"],
            "decode_bound_tokens_per_second": bound_r,
            "decode_fraction_of_bound": s["decode_tokens_per_second"] / bound_r,
            "others_cpu_share": {"bandwidth_before": sh_before, "model": sh_model, "bandwidth_after": sh_after},
            "others_cpu_share_max": others,
            "clean": others is None or others <= args.clean_threshold,
            "cpu_busy_before": idle["busy"],
            "waited_for_idle_s": idle["waited_s"],
            "loadavg_1min_before": load_before,
            "membw": {"before": bw_before, "one_thread": bw_one, "after": bw_after},
            "run_stats": s,
        }
        rounds.append(r)
        log(f"  bandwidth {bw_before['median_gbps']:.1f} / {bw_after['median_gbps']:.1f} GB/s (before/after) at "
            f"{threads} threads, {bw_one['median_gbps']:.1f} GB/s at 1 thread")
        log(f"  model: prefill {s['prefill_tokens_per_second']:.1f} tok/s, decode "
            f"{s['decode_tokens_per_second']:.1f} tok/s ({s['decode_tokens']} tokens), "
            f"{100 * r['decode_fraction_of_bound']:.1f} % of the bound")
        if not r["clean"]:
            log(f"  other processes used up to {100 * others:.0f} % of the CPUs: round not counted")

    clean = [r for r in rounds if r["clean"]]
    used = clean if clean else rounds
    if not clean:
        log("WARNING: no round ran without other processes on the CPUs; the medians below are over all rounds")
    elif len(clean) < args.repeats:
        log(f"WARNING: only {len(clean)} of {args.repeats} rounds ran without other processes on the CPUs")

    bw_samples = [x for r in used for x in (r["bandwidth_before_gbps"], r["bandwidth_after_gbps"])]
    bw_med = median(bw_samples)
    bw_best = max(r["bandwidth_best_pass_gbps"] for r in used)
    bw1_med = median([r["bandwidth_1thread_gbps"] for r in used])
    prefill_tps = median([r["prefill_tokens_per_second"] for r in used])
    decode_tps = median([r["decode_tokens_per_second"] for r in used])
    bound = bw_med * 1e9 / bytes_per_token
    fraction = decode_tps / bound
    paired_fraction = median([r["decode_fraction_of_bound"] for r in used])
    bound_best = bw_best * 1e9 / bytes_per_token
    # KV cache read per decode token at the measured context: decode steps feed positions
    # PROMPT_LEN .. PROMPT_LEN + decode_tokens - 1 and attend to every position up to their own.
    n_dec = used[0]["run_stats"]["decode_tokens"]
    mean_context = PROMPT_LEN + (n_dec + 1) / 2.0
    kv_per_token = kv["bytes_per_position"] * mean_context
    bound_with_kv = bw_med * 1e9 / (bytes_per_token + kv_per_token)
    target = 0.60
    all_decode = median([r["decode_tokens_per_second"] for r in rounds])
    all_bw = median([x for r in rounds for x in (r["bandwidth_before_gbps"], r["bandwidth_after_gbps"])])

    result = {
        "preset": PRESET,
        "checkpoint": ckpt,
        "artifact": artifact,
        "command": " ".join(["bench/run_benchmark.py"] + (sys.argv[1:] if argv is None else list(argv))),
        "machine": info,
        "membw": {"exe": mb["exe"], "build": mb["cmd"], "buffer_bytes": rounds[0]["membw"]["before"]["bytes"],
                  "passes": rounds[0]["membw"]["before"]["passes"], "isa": rounds[0]["membw"]["before"]["isa"]},
        "threads": threads,
        "repeats": args.repeats,
        "rounds_run": len(rounds),
        "rounds_clean": len(clean),
        "rounds_used": len(used),
        "clean_threshold": args.clean_threshold,
        "wait_idle_s": args.wait_idle,
        "warmup_runs": args.warmup,
        "prompt_tokens": PROMPT_LEN,
        "decode_tokens_per_run": n_dec,
        "max_new_tokens": args.decode_tokens,
        "max_seq_len": args.max_seq_len,
        "checkpoint_generate_seconds": gen_seconds,
        "compile_seconds": compile_seconds,
        "bandwidth_gbps": bw_med,
        "bandwidth_best_gbps": bw_best,
        "bandwidth_1thread_gbps": bw1_med,
        "bandwidth_samples_gbps": bw_samples,
        "weights_stored_bytes": wb["weights_stored_bytes"],
        "weights_read_bytes_per_token": bytes_per_token,
        "kv_cache_bytes_per_context_position": kv["bytes_per_position"],
        "kv_cache_mean_context": mean_context,
        "kv_cache_read_bytes_per_token": kv_per_token,
        "kv_cache_shape": kv["shape"],
        "prefill_tokens_per_second": prefill_tps,
        "decode_tokens_per_second": decode_tps,
        "decode_bound_tokens_per_second": bound,
        "decode_fraction_of_bound": fraction,
        "decode_fraction_of_bound_paired_median": paired_fraction,
        "decode_bound_best_bandwidth_tokens_per_second": bound_best,
        "decode_fraction_of_best_bandwidth_bound": decode_tps / bound_best,
        "decode_bound_with_kv_tokens_per_second": bound_with_kv,
        "decode_effective_gbps": decode_tps * bytes_per_token / 1e9,
        "all_rounds": {"decode_tokens_per_second": all_decode, "bandwidth_gbps": all_bw,
                       "decode_fraction_of_bound": all_decode / (all_bw * 1e9 / bytes_per_token)},
        "target_fraction": target,
        "target_met": fraction >= target,
        "rounds": rounds,
        "weights_by_role": wb["by_role"],
        "total_seconds": time.monotonic() - started,
    }
    with open(os.path.join(out, "benchmark.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    mb_ = 1e6
    nu = f"median of {len(used)}{' clean' if clean else ''} rounds"
    rows = [
        ("threads", f"{threads}"),
        ("rounds", f"{len(rounds)} run, {len(clean)} clean (others' CPU share <= "
                   f"{100 * args.clean_threshold:.0f} %), {len(used)} used"),
        ("memory read bandwidth, T threads", f"{bw_med:.1f} GB/s  (median of {len(bw_samples)}; best pass "
                                             f"{bw_best:.1f})"),
        ("memory read bandwidth, 1 thread", f"{bw1_med:.1f} GB/s  (median of {len(used)})"),
        ("weights stored", f"{wb['weights_stored_bytes'] / mb_:.1f} MB"),
        ("weights read per decode token", f"{bytes_per_token / mb_:.2f} MB"),
        ("KV cache read per decode token", f"{kv_per_token / mb_:.3f} MB  (mean context {mean_context:.1f}, "
                                           f"{kv['bytes_per_position']} B/position; not in the bound)"),
        ("prefill (64-token prompt)", f"{prefill_tps:.1f} tok/s  ({nu})"),
        ("decode", f"{decode_tps:.1f} tok/s  ({nu}, {n_dec} tokens each)"),
        ("decode bound = bandwidth / bytes", f"{bound:.1f} tok/s"),
        ("decode / bound", f"{100 * fraction:.1f} %  (median of per-round ratios {100 * paired_fraction:.1f} %)"),
        ("decode / bound at best pass", f"{100 * decode_tps / bound_best:.1f} %"),
        ("target", f">= {100 * target:.0f} %: {'MET' if fraction >= target else 'NOT MET'}"),
        ("compile time", f"{compile_seconds:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    log("")
    log(f"{PRESET} (bf16), {info['cpu_model']}, {info['nproc']} CPUs, {info['date']}")
    for k, v in rows:
        log(f"  {k:<{width}}  {v}")
    log("")
    def pct(x: Optional[float]) -> str:
        return "-" if x is None else f"{100 * x:.0f}"

    log("  round  bw before/after GB/s  prefill tok/s  decode tok/s  bound tok/s  decode/bound  "
        "others' CPU % (bw/model/bw)")
    for i, r in enumerate(rounds):
        oc = r["others_cpu_share"]
        bw = f"{r['bandwidth_before_gbps']:.1f} / {r['bandwidth_after_gbps']:.1f}"
        shares = f"{pct(oc['bandwidth_before'])}/{pct(oc['model'])}/{pct(oc['bandwidth_after'])}"
        log(f"  {i + 1:>5}  {bw:>20}  {r['prefill_tokens_per_second']:>13.1f}  "
            f"{r['decode_tokens_per_second']:>12.1f}  {r['decode_bound_tokens_per_second']:>11.1f}  "
            f"{100 * r['decode_fraction_of_bound']:>10.1f} %  {shares:>27}"
            f"{'' if r['clean'] else '  (not counted)'}")
    log(f"\nwrote {os.path.join(out, 'benchmark.json')} ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
