#!/usr/bin/python3
"""Side-by-side benchmark of the fusion strategies (dsv3-compile --fusion) and of the naive-prefill policy.

    PYTHONPATH=python /usr/bin/python3 bench/fusion_strategies.py [--out out/fusion] [--build build]
        [--repeats 3] [--threads all] [--ckpt out/bench/ckpt] [--naive-prefill-from 128] [--sweep 64,256,512,1024,2048]

Steps (docs/fusion-strategies.md explains the numbers):
  1. the bench-450m bf16 checkpoint (reused from --ckpt when its config.json exists, generated otherwise);
  2. per strategy: `dsv3-compile CKPT -o OUT/artifact-S FLAGS --max-seq-len 2112 --max-batch 1`, and the cost
     report `dsv3-compile CKPT --emit=dsv3 -o /dev/null FLAGS --report --report-prefill-tokens 2048
     --report-context 2048 --report-cache-dtype f32` (text and parsed rows).  The strategies:
        none     --fusion=none     naive MLA on the per-head K/V cache, each (token, slot) expert pair on its own
        latent   --fusion=latent   absorbed MLA on the latent cache, q_a|kv_a one GEMM (prepare entry)
        moe      --fusion=moe      route -> dispatch -> grouped expert GEMMs -> combine, naive MLA
        all      --fusion=all      both, absorbed MLA for every call (--naive-prefill-from=0)
        all+np   --fusion=all --naive-prefill-from=N (N = --naive-prefill-from): prefill chunks of >= N tokens
                 expand K/V from the latent and run naive MLA, decode stays absorbed;
  3. one unmeasured warm-up run (short case) per strategy, then R rounds; each round runs --short-runs (3) groups of
     the short case and one group of the long case, a group being one run of every strategy:
        short: 64-token prompt, 64 new tokens  (prefill of 64 tokens, 63 decode calls at context 64..126)
        long:  2048-token prompt, 32 new tokens (prefill of 2048 tokens, 31 decode calls at context 2048..2078)
     The order within a group rotates from group to group and from round to round.  Prompt token ids are
     (7 i + 3) % 30000 + 2, the short prompt being the first 64.  Before each run the script waits (up to
     --wait-idle s) for idle CPUs and records the share of the CPUs that other processes used during it; a round
     with a run above --clean-threshold is kept in the JSON but does not count and is replaced by an extra round
     (at most --retries in all);
  4. a round's value of a metric is the median of its runs of that case; medians per strategy over the counted
     rounds, and each strategy's ratio to none (ratio of the medians, and the median of the per-group ratios);
  5. the prefill-policy sweep: for each prompt length of --sweep, --sweep-runs side-by-side pairs of the `all`
     artifact (absorbed prefill) and one compiled with --naive-prefill-from=1 (every call expanded); the medians
     and the smallest length from which the expanded form is faster at that and every longer length measured;
  6. a table on stdout and OUT/fusion.json (bench/plot_fusion.py draws it).
A failed compile or run is printed with its command and stderr, recorded under "errors" in the JSON, and the
script exits 1 after writing what it has.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_benchmark as rb  # noqa: E402  (shared helpers: checkpoint, machine info, CPU-share accounting)

CASES = {
    # name: (prompt tokens, --max-new-tokens)
    "short": (64, 64),
    "long": (2048, 32),
}
METRICS = ("short_prefill_tps", "short_decode_tps", "long_prefill_tps", "long_decode_tps")


def strategy_flags(naive_prefill_from: int) -> Dict[str, List[str]]:
    return {
        "none": ["--fusion=none"],
        "latent": ["--fusion=latent", "--naive-prefill-from=0"],
        "moe": ["--fusion=moe"],
        "all": ["--fusion=all", "--naive-prefill-from=0"],
        "all+np": ["--fusion=all", f"--naive-prefill-from={naive_prefill_from}"],
    }


def metric_labels() -> Dict[str, str]:
    labels = {}
    for c, (p, n) in CASES.items():
        labels[f"{c}_prefill_tps"] = f"prefill tok/s, {p}-token prompt"
        labels[f"{c}_decode_tps"] = f"decode tok/s, context {p}..{p + n - 2}"
    return labels

REPORT_TOKENS = 2048
REPORT_CONTEXT = 2048
REPORT_CACHE_DTYPE = "f32"
REPORT_COLUMNS = ("count", "prefill_gflop", "prefill_w_mb", "decode_gflop", "decode_w_mb", "decode_kv_mb",
                  "kv_bytes_per_token")


def log(msg: str) -> None:
    print(msg, flush=True)


class RunError(Exception):
    pass


def token_ids(n: int) -> List[int]:
    return [(7 * i + 3) % 30000 + 2 for i in range(n)]


def run_cmd(cmd: List[str], what: str, heartbeat: Optional[float] = None) -> Tuple[str, float]:
    """Runs cmd; returns (stdout, seconds).  With `heartbeat`, prints a progress line every that many seconds
    while it runs.  Raises RunError with the exit status and stderr on failure."""
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        raise RunError(f"{what}: cannot run {cmd[0]}: {e}")
    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat):
            log(f"    ... {what}: still running ({time.monotonic() - t0:.0f} s)")

    th = None
    if heartbeat:
        th = threading.Thread(target=beat, daemon=True)
        th.start()
    out, err = p.communicate()
    done.set()
    if th is not None:
        th.join()
    dt = time.monotonic() - t0
    if p.returncode != 0:
        shown = " ".join(c if len(c) < 200 else c[:60] + f"...({len(c)} chars)" for c in cmd)
        raise RunError(f"{what} failed (exit {p.returncode}) after {dt:.1f} s: {shown}\n{err.strip()}")
    return out, dt


def parse_report(text: str) -> Dict[str, Any]:
    """Rows of the `dsv3-compile --report` table: {"header": ..., "rows": {kind: {column: value}}}."""
    lines = [l for l in text.splitlines() if l.strip()]
    header = next((l for l in lines if l.startswith("dsv3 cost report")), None)
    if header is None:
        raise RunError(f"no 'dsv3 cost report' line in the --report output:\n{text}")
    rows: Dict[str, Dict[str, float]] = {}
    for l in lines:
        m = re.match(r"^(dense layers|MoE layers|embedding \+ head|total)\s+(\S.*)$", l)
        if not m:
            continue
        vals = m.group(2).split()
        if len(vals) != len(REPORT_COLUMNS):
            raise RunError(f"unexpected report row ({len(vals)} values): {l!r}")
        rows[m.group(1)] = {c: (int(v) if c in ("count", "kv_bytes_per_token") else float(v))
                            for c, v in zip(REPORT_COLUMNS, vals)}
    if "total" not in rows:
        raise RunError(f"no 'total' row in the --report output:\n{text}")
    return {"header": header, "rows": rows, "total": rows["total"]}


def kv_cache_input(manifest: Dict[str, Any]) -> Dict[str, Any]:
    for inp in manifest["inputs"]:
        if inp["name"] == "kv_cache":
            layers, batch, seq, width = inp["shape"]
            return {"shape": inp["shape"], "dtype": inp["dtype"],
                    "bytes_per_position": layers * width * rb.DTYPE_BYTES[inp["dtype"]]}
    raise RunError("manifest has no kv_cache input")


def run_model(runner: str, artifact: str, ckpt: str, case: str, threads: int, stats_path: str,
              heartbeat: Optional[float]) -> Dict[str, Any]:
    n_prompt, n_new = CASES[case]
    if os.path.exists(stats_path):
        os.remove(stats_path)
    cmd = [runner, artifact, "--weights", ckpt, "--tokens", ",".join(map(str, token_ids(n_prompt))),
           "--max-new-tokens", str(n_new), "--threads", str(threads), "--ignore-eos", "--stats-out", stats_path]
    _, wall = run_cmd(cmd, f"dsv3-run {os.path.basename(artifact)} ({case})", heartbeat)
    with open(stats_path, encoding="utf-8") as f:
        s = json.load(f)
    if s.get("prefill_tokens") != n_prompt or s.get("prefill_calls") != 1:
        raise RunError(f"unexpected prefill in the stats of {artifact} ({case}): {s.get('prefill_tokens')} tokens, "
                       f"{s.get('prefill_calls')} calls")
    if s.get("decode_tokens", 0) <= 0 or s.get("decode_seconds", 0) <= 0:
        raise RunError(f"{artifact} ({case}) decoded no tokens")
    s["wall_seconds"] = wall
    return s


def median(xs: List[float]) -> Optional[float]:
    return float(statistics.median(xs)) if xs else None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "out", "fusion"), help="output directory (out/fusion)")
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="build directory with bin/ (build)")
    ap.add_argument("--ckpt", default=os.path.join(REPO, "out", "bench", "ckpt"),
                    help="bench-450m checkpoint; generated there when missing (out/bench/ckpt)")
    ap.add_argument("--repeats", type=int, default=3, help="counted rounds; medians are reported (3)")
    ap.add_argument("--threads", type=int, default=0, help="dsv3-run --threads (0: all CPUs)")
    ap.add_argument("--max-seq-len", type=int, default=2112, help="artifact KV-cache positions (2112)")
    ap.add_argument("--short-runs", type=int, default=3,
                    help="groups of the short case per round (3; the long case runs once per round)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured short runs per strategy before the rounds (1)")
    ap.add_argument("--naive-prefill-from", type=int, default=128,
                    help="--naive-prefill-from of the all+np strategy (128, dsv3-compile's default)")
    ap.add_argument("--sweep", default="64,256,512,1024,2048",
                    help="prompt lengths of the prefill-policy sweep ('' to skip)")
    ap.add_argument("--sweep-runs", type=int, default=3, help="side-by-side pairs per sweep length (3)")
    ap.add_argument("--wait-idle", type=float, default=15.0,
                    help="before each run, wait up to this many seconds for the CPUs to be < 25%% busy (15; 0: never)")
    ap.add_argument("--clean-threshold", type=float, default=0.10,
                    help="a round counts only if other processes used at most this share of the CPUs in each of "
                         "its runs (0.10)")
    ap.add_argument("--retries", type=int, default=2,
                    help="extra rounds, in all, to replace rounds disturbed by other processes (2)")
    args = ap.parse_args(argv)
    METRIC_LABEL = metric_labels()
    FLAGS = strategy_flags(args.naive_prefill_from)
    STRATEGIES = tuple(FLAGS)
    runs_per_round = {"short": max(1, args.short_runs), "long": 1}
    sweep = [int(x) for x in args.sweep.split(",") if x.strip()]

    threads = args.threads if args.threads > 0 else len(os.sched_getaffinity(0))
    if args.repeats < 1:
        rb.die("--repeats must be >= 1")
    need = max([p + n for p, n in CASES.values()] + [p + 2 for p in sweep])
    if need > args.max_seq_len:
        rb.die(f"--max-seq-len {args.max_seq_len} is below the {need} positions the cases need")
    out = os.path.abspath(args.out)
    bindir = os.path.join(os.path.abspath(args.build), "bin")
    compiler = os.path.join(bindir, "dsv3-compile")
    runner = os.path.join(bindir, "dsv3-run")
    for tool in (compiler, runner):
        if not os.access(tool, os.X_OK):
            rb.die(f"{tool} not found (build the project or pass --build)")
    os.makedirs(out, exist_ok=True)
    ckpt = os.path.abspath(args.ckpt)
    started = time.monotonic()
    info = rb.machine_info(threads)
    log(f"machine: {info['cpu_model']}, {info['nproc']} CPUs, threads {threads}, {info['date']}")
    errors: List[str] = []
    result: Dict[str, Any] = {
        "preset": rb.PRESET,
        "checkpoint": ckpt,
        "command": " ".join(["bench/fusion_strategies.py"] + (sys.argv[1:] if argv is None else list(argv))),
        "machine": info,
        "threads": threads,
        "repeats": args.repeats,
        "max_seq_len": args.max_seq_len,
        "cases": {c: {"prompt_tokens": p, "max_new_tokens": n, "decode_tokens": n - 1,
                      "decode_context": [p, p + n - 2]} for c, (p, n) in CASES.items()},
        "token_ids": "(7*i + 3) % 30000 + 2, i = 0..prompt_tokens-1",
        "clean_threshold": args.clean_threshold,
        "wait_idle_s": args.wait_idle,
        "warmup_runs": args.warmup,
        "runs_per_round": runs_per_round,
        "metrics": dict(METRIC_LABEL),
        "strategy_order": list(STRATEGIES),
        "strategies": {},
        "rounds": [],
        "errors": errors,
    }

    def write_json() -> str:
        result["total_seconds"] = time.monotonic() - started
        path = os.path.join(out, "fusion.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        return path

    def fail(msg: str) -> None:
        log(f"ERROR: {msg}")
        errors.append(msg)

    rb.ensure_checkpoint(ckpt)

    def compile_artifact(name: str, flags: List[str]) -> Dict[str, Any]:
        art = os.path.join(out, f"artifact-{name}")
        entry: Dict[str, Any] = {"flags": flags, "artifact": art}
        cmd = [compiler, ckpt, "-o", art, *flags, f"--max-seq-len={args.max_seq_len}", "--max-batch=1"]
        entry["compile_command"] = " ".join(["dsv3-compile", "CKPT"] + cmd[2:])
        try:
            shutil.rmtree(art, ignore_errors=True)
            _, dt = run_cmd(cmd, f"dsv3-compile {' '.join(flags)}", heartbeat=30)
            entry["compile_seconds"] = dt
            with open(os.path.join(art, "manifest.json"), encoding="utf-8") as f:
                entry["kv_cache"] = kv_cache_input(json.load(f))
            log(f"compile {name} ({' '.join(flags)}): {dt:.1f} s, kv_cache {entry['kv_cache']['shape']} "
                f"{entry['kv_cache']['dtype']} ({entry['kv_cache']['bytes_per_position']} B per position)")
        except (RunError, OSError, KeyError) as e:
            fail(f"compile {name}: {e}")
            entry["compile_failed"] = True
        return entry

    # Compile + cost report per strategy.
    strat: Dict[str, Dict[str, Any]] = result["strategies"]
    for s in STRATEGIES:
        report_cmd = [compiler, ckpt, "--emit=dsv3", "-o", os.devnull, *FLAGS[s], "--report",
                      f"--report-prefill-tokens={REPORT_TOKENS}", f"--report-context={REPORT_CONTEXT}",
                      f"--report-cache-dtype={REPORT_CACHE_DTYPE}"]
        entry = compile_artifact(s, FLAGS[s])
        strat[s] = entry
        entry["report_command"] = " ".join(["dsv3-compile", "CKPT"] + report_cmd[2:])
        try:
            text, _ = run_cmd(report_cmd, f"dsv3-compile --report {' '.join(FLAGS[s])}")
            entry["report_text"] = text
            entry["report"] = parse_report(text)
            t = entry["report"]["total"]
            log(f"report {s}: prefill {t['prefill_gflop']:.1f} GFLOP / {t['prefill_w_mb']:.1f} MB weights, decode "
                f"{t['decode_gflop']:.4f} GFLOP, decode W {t['decode_w_mb']:.1f} MB, decode KV "
                f"{t['decode_kv_mb']:.1f} MB, KV {t['kv_bytes_per_token']} B/token")
        except RunError as e:
            fail(str(e))
    if any(strat[s].get("compile_failed") for s in STRATEGIES):
        log(f"wrote {write_json()}")
        return 1

    stats_path = os.path.join(out, "stats.json")
    for s in STRATEGIES:
        for i in range(args.warmup):
            log(f"warm-up {s} (short) {i + 1}/{args.warmup}")
            try:
                run_model(runner, strat[s]["artifact"], ckpt, "short", threads, stats_path, None)
            except RunError as e:
                fail(f"warm-up: {e}")

    def measure(artifact: str, label: str, case: str, round_no: int) -> Optional[Dict[str, Any]]:
        """One dsv3-run of an artifact on a case, after waiting for idle CPUs; None (error recorded) on failure."""
        idle = rb.wait_for_idle(args.wait_idle) if args.wait_idle > 0 else {"busy": None, "waited_s": 0.0}
        if idle["waited_s"] > 2:
            log(f"  waited {idle['waited_s']:.0f} s for idle CPUs (last {100 * idle['busy']:.0f} % busy)")
        o = rb.OthersCpu()
        o.start()
        try:
            st = run_model(runner, artifact, ckpt, case, threads, stats_path,
                           heartbeat=15 if CASES[case][0] > 512 else None)
        except RunError as e:
            fail(f"round {round_no}: {e}")
            return None
        sh = o.stop()
        gen = st.pop("generated_tokens", None)
        log(f"  {case:5s} {label:7s}: prefill {st['prefill_tokens_per_second']:7.1f} tok/s, decode "
            f"{st['decode_tokens_per_second']:6.1f} tok/s ({st['decode_tokens']} tokens), "
            f"wall {st['wall_seconds']:.1f} s{'' if sh is None else f', others {100 * sh:.0f} % CPU'}")
        return {"prefill_tps": st["prefill_tokens_per_second"], "decode_tps": st["decode_tokens_per_second"],
                "others_cpu_share": sh, "waited_for_idle_s": idle["waited_s"], "stats": st, "generated_tokens": gen}

    # Rounds: --short-runs groups of the short case, then one group of the long case; the order within a group
    # rotates from group to group and from round to round.
    rounds: List[Dict[str, Any]] = result["rounds"]
    for _ in rb.round_numbers(rounds, args.repeats, args.retries, log):
        rnd: Dict[str, Any] = {"runs": {s: {c: [] for c in CASES} for s in STRATEGIES}, "groups": {c: [] for c in CASES},
                               "failed": False}
        shares: List[float] = []
        group_index = 0
        for case in CASES:
            for _ in range(runs_per_round[case]):
                k = (len(rounds) + group_index) % len(STRATEGIES)
                order = STRATEGIES[k:] + STRATEGIES[:k]
                group_index += 1
                group: Dict[str, Any] = {"order": list(order)}
                for s in order:
                    run = measure(strat[s]["artifact"], s, case, len(rounds) + 1)
                    if run is None:
                        rnd["failed"] = True
                        continue
                    rnd["runs"][s][case].append(run)
                    group[s] = {"prefill_tps": run["prefill_tps"], "decode_tps": run["decode_tps"]}
                    if run["others_cpu_share"] is not None:
                        shares.append(run["others_cpu_share"])
                if all(x in group for x in STRATEGIES):
                    rnd["groups"][case].append(group)
        rnd["others_cpu_share_max"] = max(shares) if shares else None
        rnd["clean"] = (not rnd["failed"]) and (not shares or max(shares) <= args.clean_threshold)
        rounds.append(rnd)
        if rnd["failed"]:
            log("  a run failed: round not counted")
        elif not rnd["clean"]:
            log(f"  other processes used up to {100 * max(shares):.0f} % of the CPUs: round not counted")
        write_json()  # partial results survive an interrupted run

    clean = [r for r in rounds if r["clean"]]
    complete = [r for r in rounds if not r["failed"]]
    used = clean if clean else complete
    result["rounds_run"] = len(rounds)
    result["rounds_clean"] = len(clean)
    result["rounds_used"] = len(used)
    if not clean:
        log("WARNING: no round ran without other processes on the CPUs (or without a failure); "
            "the medians are over every complete round")
    elif len(clean) < args.repeats:
        log(f"WARNING: only {len(clean)} of {args.repeats} rounds counted")

    def value(r: Dict[str, Any], s: str, metric: str) -> Optional[float]:
        """The round's value of a metric: the median of the round's runs of that case."""
        case, _, kind = metric.partition("_")  # "short_prefill_tps" -> "short", "prefill_tps"
        return median([run[kind] for run in r["runs"][s][case]])

    for s in STRATEGIES:
        e = strat[s]
        e["medians"] = {m: median([v for r in used if (v := value(r, s, m)) is not None]) for m in METRICS}
        kvb = [run["stats"]["kv_cache_bytes"] for r in used for c in CASES for run in r["runs"][s][c]]
        e["kv_cache_bytes"] = kvb[0] if kvb else None
        if kvb and len(set(kvb)) != 1:
            fail(f"{s}: kv_cache_bytes differs between runs: {sorted(set(kvb))}")
    # Ratios to none: of the medians, and the median of the per-group ratios.
    ratios: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for s in STRATEGIES:
        if s == "none":
            continue
        ratios[s] = {}
        for m in METRICS:
            a, b = strat[s]["medians"][m], strat["none"]["medians"][m]
            case, _, kind = m.partition("_")
            per_group = [g[s][kind] / g["none"][kind] for r in used for g in r["groups"][case]]
            ratios[s][m] = {"ratio_of_medians": (a / b) if a is not None and b else None,
                            "median_of_group_ratios": median(per_group), "group_ratios": per_group}
        kv_n, kv_s = strat["none"]["kv_cache_bytes"], strat[s]["kv_cache_bytes"]
        ratios[s]["kv_cache_bytes"] = {"ratio_of_medians": (kv_s / kv_n) if kv_n and kv_s else None}
    result["ratios_over_none"] = ratios
    same = {}
    for c in CASES:
        outs = [run["generated_tokens"] for r in complete for st in STRATEGIES for run in r["runs"][st][c]]
        same[c] = all(o == outs[0] for o in outs) if outs else None
    result["greedy_tokens_identical"] = same
    write_json()

    # The prefill-policy sweep: absorbed (all) vs expanded (--naive-prefill-from=1) prefill by prompt length.
    policy: Dict[str, Any] = {"lengths": sweep, "runs": {}, "medians": {}}
    result["prefill_policy"] = policy
    if sweep:
        expanded = compile_artifact("all-expanded", ["--fusion=all", "--naive-prefill-from=1"])
        policy["expanded_artifact"] = expanded
        forms = {"absorbed": strat["all"]["artifact"], "expanded": expanded["artifact"]}
        if not expanded.get("compile_failed"):
            for n in sweep:
                CASES[f"p{n}"] = (n, 2)
                runs = {f: [] for f in forms}
                for i in range(max(1, args.sweep_runs)):
                    order = list(forms) if i % 2 == 0 else list(reversed(list(forms)))
                    for f in order:
                        run = measure(forms[f], f[:7], f"p{n}", 0)
                        if run is not None:
                            runs[f].append(run["prefill_tps"])
                policy["runs"][str(n)] = runs
                policy["medians"][str(n)] = {f: median(v) for f, v in runs.items()}
                write_json()
            # Smallest length from which expanded is at least as fast at every longer length measured.
            best = None
            for n in reversed(sweep):
                m = policy["medians"][str(n)]
                if m["expanded"] is not None and m["absorbed"] is not None and m["expanded"] >= m["absorbed"]:
                    best = n
                else:
                    break
            policy["expanded_wins_from"] = best
    path = write_json()

    # Table.
    log("")
    log(f"{rb.PRESET} (bf16), {info['cpu_model']}, {info['nproc']} CPUs, {threads} threads, {info['date']}")
    log(f"rounds: {len(rounds)} run, {len(clean)} clean (others' CPU share <= {100 * args.clean_threshold:.0f} %), "
        f"{len(used)} used; medians over the used rounds; (x) = ratio to none, median of the side-by-side groups")
    w = max(len(l) for l in METRIC_LABEL.values() if not l.startswith("prefill tok/s, 2") or True)

    def f1(x: Optional[float], fmt: str = "{:.1f}") -> str:
        return "-" if x is None else fmt.format(x)

    log(f"  {'':<{w}}  " + "  ".join(f"{s:>15}" for s in STRATEGIES))
    for m in METRICS:
        cells = []
        for s in STRATEGIES:
            v = f1(strat[s]["medians"][m])
            if s != "none":
                v += f" ({f1(ratios[s][m]['median_of_group_ratios'], '{:.2f}')})"
            cells.append(f"{v:>15}")
        log(f"  {METRIC_LABEL[m]:<{w}}  " + "  ".join(cells))
    log(f"  {'kv_cache_bytes (stats)':<{w}}  " + "  ".join(f"{f1(strat[s]['kv_cache_bytes'], '{:.0f}'):>15}"
                                                          for s in STRATEGIES))
    log("")
    log(f"  cost report (prefill {REPORT_TOKENS} tokens, decode at context {REPORT_CONTEXT}, "
        f"{REPORT_CACHE_DTYPE} cache), total row:")
    log(f"  {'':<8}  {'prefill GFLOP':>13}  {'prefill W MB':>12}  {'decode GFLOP':>12}  {'decode W MB':>11}  "
        f"{'decode KV MB':>12}  {'KV B/token':>10}")
    for s in STRATEGIES:
        rep = strat[s].get("report")
        if rep is None:
            log(f"  {s:<8}  (no report)")
            continue
        t = rep["total"]
        log(f"  {s:<8}  {t['prefill_gflop']:>13.3f}  {t['prefill_w_mb']:>12.1f}  {t['decode_gflop']:>12.6f}  "
            f"{t['decode_w_mb']:>11.3f}  {t['decode_kv_mb']:>12.3f}  {t['kv_bytes_per_token']:>10}")
    log(f"  greedy tokens identical across strategies: {same}")
    if sweep and policy.get("medians"):
        log("")
        log("  prefill policy (--fusion=all): prefill tok/s, absorbed vs K/V expanded from the latent")
        for n in sweep:
            m = policy["medians"].get(str(n), {})
            a, x = m.get("absorbed"), m.get("expanded")
            log(f"  {n:>6} tokens: absorbed {f1(a):>8}  expanded {f1(x):>8}  "
                f"expanded/absorbed {f1(x / a if a and x else None, '{:.2f}')}")
        log(f"  expanded at least as fast from {policy.get('expanded_wins_from')} tokens on")
    if errors:
        log(f"\n{len(errors)} error(s):")
        for e in errors:
            log(f"  {e}")
    log(f"\nwrote {path} ({result['total_seconds']:.0f} s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
