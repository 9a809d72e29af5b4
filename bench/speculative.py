#!/usr/bin/env python3
"""Decode with and without MTP speculative decoding, side by side (docs/benchmarks.md, "Speculative decoding").

    python3 bench/speculative.py [--out out/speculative] [--alphas 0,0.3] [--drafts 1,3] [--decode-tokens 64]
                                 [--rounds 3] [--threads N]

The model is bench-450m with one MTP layer. Random weights would give an MTP module that never agrees with the main
model, so each checkpoint is generated with generate_model --mtp-agreement ALPHA: every block's output projections
are scaled by ALPHA (zero in the MTP block) and the MTP module's eh_proj, norms and head are chosen so that it drafts
g(t) = lm_head(norm(emb(t))), which is exactly the main model's prediction at ALPHA = 0 and agrees less often as
ALPHA grows (python/dsv3/generate_model.py, _mtp_agreement_weight). The weights are the same size as random ones,
so every call costs what it costs on a real checkpoint; only the acceptance rate is chosen.

Per ALPHA the checkpoint is compiled once (dsv3-compile --mtp); each round runs plain decoding and then
--speculative mtp --draft-tokens K for each K on the same prompt with --ignore-eos, and records decode tok/s (tokens
after the first over the decode seconds) and the acceptance rate. The greedy tokens of every speculative run are
checked to equal the plain run's. Writes OUT/speculative.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_benchmark as rb  # noqa: E402  (running tools, dying with a message)

REPO = os.path.dirname(HERE)


def run_once(bin_dir, artifact, ckpt, prompt, new_tokens, threads, stats_path, extra):
    if os.path.exists(stats_path):
        os.remove(stats_path)
    rb.run([os.path.join(bin_dir, "dsv3-run"), artifact, "--weights", ckpt, "--tokens", ",".join(map(str, prompt)),
            "--max-new-tokens", str(new_tokens), "--threads", str(threads), "--ignore-eos", "--stats-out",
            stats_path, *extra], "dsv3-run")
    with open(stats_path, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "out", "speculative"))
    ap.add_argument("--build", default=os.environ.get("DSV3_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--alphas", default="0,0.3")
    ap.add_argument("--drafts", default="1,3")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    bin_dir = os.path.join(args.build, "bin")
    os.makedirs(args.out, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(REPO, "python")
    config_dir = os.path.join(args.out, "config")
    rb.run([sys.executable, "-m", "dsv3.generate_model", "--preset", "bench-450m", "--config-only", "--out",
            config_dir], "generate_model", env=env)
    config_path = os.path.join(config_dir, "config.json")
    config = json.load(open(config_path))
    config["num_nextn_predict_layers"] = 1
    json.dump(config, open(config_path, "w"))

    drafts = [int(k) for k in args.drafts.split(",")]
    prompt = [(7 * i + 3) % 1000 + 2 for i in range(args.prompt_tokens)]
    stats_path = os.path.join(args.out, "stats.json")
    result = {"model": "bench-450m + 1 MTP layer (bf16 weights)", "prompt_tokens": args.prompt_tokens,
              "decode_tokens": args.decode_tokens, "rounds": args.rounds, "threads": args.threads, "alphas": {},
              "command": "python3 bench/speculative.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    for alpha in args.alphas.split(","):
        ckpt = os.path.join(args.out, f"ckpt-alpha{alpha}")
        if not os.path.isfile(os.path.join(ckpt, "config.json")):
            rb.log(f"generating the checkpoint with --mtp-agreement {alpha} ...")
            rb.run([sys.executable, "-m", "dsv3.generate_model", "--config", config_path, "--out", ckpt,
                    "--dtype", "bf16", "--mtp-agreement", alpha], "generate_model", env=env)
        artifact = os.path.join(args.out, f"artifact-alpha{alpha}")
        rb.run([os.path.join(bin_dir, "dsv3-compile"), ckpt, "--mtp", "-o", artifact, "--max-seq-len",
                str(args.prompt_tokens + args.decode_tokens + 16)], "dsv3-compile")
        modes = ["plain"] + [f"k{k}" for k in drafts]
        runs = {m: [] for m in modes}
        for rnd in range(args.rounds):
            for mode in modes:
                extra = [] if mode == "plain" else ["--speculative", "mtp", "--draft-tokens", mode[1:]]
                s = run_once(bin_dir, artifact, ckpt, prompt, args.decode_tokens, args.threads, stats_path, extra)
                if mode != "plain" and s["generated_tokens"] != runs["plain"][-1]["generated_tokens"]:
                    rb.die(f"alpha {alpha} {mode}: speculative greedy tokens differ from plain decoding")
                runs[mode].append(s)
                spec = s.get("speculative", {})
                rb.log(f"alpha {alpha} round {rnd + 1} {mode}: {s['decode_tokens_per_second']:.1f} tok/s"
                       + (f", acceptance {spec['acceptance_rate']:.2f}" if spec else ""))
        base = statistics.median(s["decode_tokens_per_second"] for s in runs["plain"])
        entry = {}
        for mode in modes:
            rate = statistics.median(s["decode_tokens_per_second"] for s in runs[mode])
            entry[mode] = {"decode_tokens_per_second": rate, "over_plain": rate / base,
                           "rounds": [s["decode_tokens_per_second"] for s in runs[mode]]}
            if mode != "plain":
                spec = runs[mode][0]["speculative"]
                entry[mode].update({"acceptance_rate": spec["acceptance_rate"],
                                    "tokens_per_verify_call": spec["tokens_per_verify_call"]})
        result["alphas"][alpha] = entry
    with open(os.path.join(args.out, "speculative.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
