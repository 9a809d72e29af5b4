#!/usr/bin/env python3
"""Decode at a long context with each KV-cache element type, side by side (docs/benchmarks.md, "KV-cache dtypes").

    python3 bench/kv_cache_dtypes.py [--out out/kv-dtypes] [--context 2048] [--decode-tokens 32] [--rounds 3]
                                     [--dtypes f32,bf16,fp8] [--threads N]

bench-450m (bf16 weights; the checkpoint of run_benchmark.py, reused from out/bench/ckpt or generated) is compiled
once per dtype (dsv3-compile --kv-cache-dtype, --max-seq-len context + decode tokens); each round runs every artifact
in turn (so the machine's noise hits all alike) on the same prompt of `context` tokens with --max-new-tokens
`decode-tokens` --ignore-eos, and records dsv3-run's decode tok/s (the decode steps only: at positions context ..
context + decode-tokens - 1, each reading the whole cache prefix) and kv_cache_bytes. Reports medians and bests over
rounds and each dtype's ratios to f32. Writes OUT/kv-cache-dtypes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_benchmark as rb  # noqa: E402  (checkpoint generation, running tools, dying with a message)

REPO = os.path.dirname(HERE)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "out", "kv-dtypes"))
    ap.add_argument("--ckpt", default=os.path.join(REPO, "out", "bench", "ckpt"),
                    help="bench-450m checkpoint (generated when missing)")
    ap.add_argument("--build", default=os.environ.get("DSV3_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--context", type=int, default=2048, help="prompt tokens before the decode steps (2048)")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtypes", default="f32,bf16,fp8")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    dtypes = args.dtypes.split(",")
    if "f32" not in dtypes:
        rb.die("--dtypes must include f32 (the ratios are to it)")
    bin_dir = os.path.join(args.build, "bin")
    os.makedirs(args.out, exist_ok=True)
    rb.ensure_checkpoint(args.ckpt)

    artifacts = {}
    for dtype in dtypes:
        artifacts[dtype] = os.path.join(args.out, f"bench-450m-{dtype}.artifact")
        rb.run([os.path.join(bin_dir, "dsv3-compile"), args.ckpt, "-o", artifacts[dtype], "--max-seq-len",
                str(args.context + args.decode_tokens), f"--kv-cache-dtype={dtype}"], "dsv3-compile")
    prompt = [(7 * i + 3) % 1000 + 2 for i in range(args.context)]
    stats_path = os.path.join(args.out, "stats.json")
    runs = {dtype: [] for dtype in dtypes}
    for rnd in range(args.rounds):
        for dtype in dtypes:
            s = rb.run_model(os.path.join(bin_dir, "dsv3-run"), artifacts[dtype], args.ckpt, prompt,
                             args.decode_tokens, args.threads, stats_path)
            runs[dtype].append(s)
            rb.log(f"round {rnd + 1}/{args.rounds} {dtype}: {s['decode_tokens_per_second']:.1f} tok/s decode, "
                   f"KV cache {s['kv_cache_bytes'] / 2**20:.1f} MiB")
    result = {"model": "bench-450m (bf16 weights)", "context": args.context, "decode_tokens": args.decode_tokens,
              "rounds": args.rounds, "threads": args.threads, "dtypes": {},
              "command": "python3 bench/kv_cache_dtypes.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    base = statistics.median(s["decode_tokens_per_second"] for s in runs["f32"])
    best_base = max(s["decode_tokens_per_second"] for s in runs["f32"])
    for dtype in dtypes:
        rate = statistics.median(s["decode_tokens_per_second"] for s in runs[dtype])
        best = max(s["decode_tokens_per_second"] for s in runs[dtype])
        # The best round too: a neighbour's load only ever slows a round down.
        result["dtypes"][dtype] = {"decode_tokens_per_second": rate, "over_f32": rate / base,
                                   "best_decode_tokens_per_second": best, "best_over_f32": best / best_base,
                                   "rounds": [s["decode_tokens_per_second"] for s in runs[dtype]],
                                   "kv_cache_bytes": runs[dtype][0]["kv_cache_bytes"],
                                   "prefill_tokens_per_second": statistics.median(
                                       s["prefill_tokens_per_second"] for s in runs[dtype])}
    with open(os.path.join(args.out, "kv-cache-dtypes.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
