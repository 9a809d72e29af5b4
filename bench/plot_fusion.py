#!/usr/bin/python3
"""Charts of bench/fusion_strategies.py's results: every fusion strategy side by side, the prefill policy, the KV cache.

    /usr/bin/python3 bench/plot_fusion.py [--out out/fusion] [--png docs/fusion-strategies.png]

Reads OUT/fusion.json and writes the chart to --png and to OUT/fusion-strategies.png.  Left: median prefill and
decode tokens/s of every strategy for the short (64-token prompt) and long (2048-token prompt) case, whiskers
spanning the counted rounds' values, each bar labelled with its ratio to none.  Middle: the prefill-policy sweep,
prefill tokens/s of absorbed MLA and of K/V expanded from the latent by prompt length.  Right: KV-cache bytes per
token of context of each strategy's compiled cache (f32, all layers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"none": "#c0504d", "latent": "#4f81bd", "moe": "#9bbb59", "all": "#8064a2", "all+np": "#f79646"}
METRICS = ("short_prefill_tps", "long_prefill_tps", "short_decode_tps", "long_decode_tps")


def round_values(data: Dict[str, Any], strategy: str, metric: str) -> List[float]:
    """Per counted round, the median of that round's runs (as fusion_strategies.py computes the medians)."""
    case, _, kind = metric.partition("_")
    rounds = [r for r in data["rounds"] if r.get("clean")] or [r for r in data["rounds"] if not r.get("failed")]
    out = []
    for r in rounds:
        runs = r["runs"][strategy].get(case) or []
        if runs:
            out.append(statistics.median(run[kind] for run in runs))
    return out


def label(data: Dict[str, Any], metric: str) -> str:
    case, _, kind = metric.partition("_")
    c = data["cases"][case]
    if kind == "prefill_tps":
        return f"prefill\n{c['prompt_tokens']}-token prompt"
    lo, hi = c["decode_context"]
    return f"decode\ncontext {lo}–{hi}"


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "out", "fusion"), help="directory with fusion.json")
    ap.add_argument("--png", default=os.path.join(REPO, "docs", "fusion-strategies.png"), help="chart path")
    args = ap.parse_args(argv)
    src = os.path.join(args.out, "fusion.json")
    try:
        with open(src, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"plot_fusion: error: cannot read {src}: {e}", file=sys.stderr)
        return 1
    strat = data["strategies"]
    order = [s for s in data.get("strategy_order", list(strat)) if "medians" in strat.get(s, {})]
    if "none" not in order or all(v is None for s in order for v in strat[s]["medians"].values()):
        errs = data.get("errors") or []
        print(f"plot_fusion: error: {src} has no measurements (the benchmark did not finish or every run failed; "
              f"{len(errs)} error(s) recorded{'; the first: ' + errs[0] if errs else ''})", file=sys.stderr)
        return 1

    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.8), gridspec_kw={"width_ratios": [3, 1.4, 1.1]})
    width = 0.8 / len(order)
    xs = list(range(len(METRICS)))
    top = 0.0
    ratios = data.get("ratios_over_none", {})
    for k, s in enumerate(order):
        raw = [strat[s]["medians"].get(m) for m in METRICS]
        med = [v or 0.0 for v in raw]
        lo, hi = [], []
        for m, v in zip(METRICS, med):
            vals = round_values(data, s, m) or [v]
            lo.append(max(0.0, v - min(vals)))
            hi.append(max(0.0, max(vals) - v))
            top = max(top, max(vals))
        pos = [x + (k - (len(order) - 1) / 2) * width for x in xs]
        flags = " ".join(strat[s].get("flags", []))
        bars = ax.bar(pos, med, width, color=COLORS.get(s, "#777777"), label=f"{s}  ({flags})", yerr=[lo, hi],
                      capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        for b, m, v in zip(bars, METRICS, raw):
            if v is None:
                continue
            txt = f"{v:.0f}"
            r = ratios.get(s, {}).get(m, {}).get("median_of_group_ratios")
            if r is not None:
                txt += f"\n{r:.2f}×"
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + hi[METRICS.index(m)] + 2, txt, ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels([label(data, m) for m in METRICS], fontsize=10)
    ax.set_ylabel("tokens / s (median; whiskers: range over rounds)")
    ax.set_ylim(0, top * 1.3)
    ax.axvline(1.5, color="#999999", linewidth=0.8, linestyle=":")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    m = data["machine"]
    used = data.get("rounds_used", len(data["rounds"]))
    ax.set_title(f"{data['preset']} (bf16, {data['threads']} threads, {m.get('cpu_model') or 'CPU'}): medians of "
                 f"{used} rounds, {m['date'][:10]}; n.nn× = ratio to none (side by side)", fontsize=10)

    # Middle: the prefill policy.
    policy = data.get("prefill_policy") or {}
    med = policy.get("medians") or {}
    lengths = [n for n in policy.get("lengths", []) if str(n) in med]
    if lengths:
        for form, color in (("absorbed", COLORS["all"]), ("expanded", COLORS["all+np"])):
            ys = [med[str(n)].get(form) for n in lengths]
            ax2.plot(lengths, ys, marker="o", color=color,
                     label={"absorbed": "absorbed MLA on the latent",
                            "expanded": "K/V expanded from the latent, naive MLA"}[form])
        ax2.set_xscale("log", base=2)
        ax2.set_xticks(lengths)
        ax2.set_xticklabels([str(n) for n in lengths])
        ax2.set_xlabel("prompt tokens (one prefill call)")
        ax2.set_ylabel("prefill tokens / s (median)")
        ax2.set_ylim(0, None)
        ax2.legend(fontsize=8, frameon=False, loc="lower left")
        wins = policy.get("expanded_wins_from")
        ax2.set_title("prefill policy (--fusion=all)" +
                      (f": expanded faster from {wins} tokens" if wins else ": absorbed always faster"),
                      fontsize=10)
        ax2.grid(alpha=0.3)
    else:
        ax2.axis("off")

    # Right: KV-cache bytes per token of context.
    kv = [(s, strat[s].get("kv_cache", {}).get("bytes_per_position") or 0) for s in order]
    bars = ax3.bar(range(len(kv)), [v / 1024 for _, v in kv], 0.6, color=[COLORS.get(s, "#777777") for s, _ in kv])
    for b, (_, v) in zip(bars, kv):
        ax3.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, f"{v:,} B", ha="center", va="bottom",
                 fontsize=8)
    ax3.set_xticks(range(len(kv)))
    ax3.set_xticklabels([s for s, _ in kv], fontsize=9)
    ax3.set_ylabel("KV cache, KiB per token of context (f32, all layers)")
    ax3.set_ylim(0, max(v for _, v in kv) / 1024 * 1.2 if kv else 1)
    ax3.set_title("KV-cache size", fontsize=10)
    ax3.grid(axis="y", alpha=0.3)
    ax3.set_axisbelow(True)

    fig.tight_layout()
    outs = [args.png, os.path.join(args.out, "fusion-strategies.png")]
    for p in outs:
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
        fig.savefig(p, dpi=110)
    print("wrote " + ", ".join(outs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
