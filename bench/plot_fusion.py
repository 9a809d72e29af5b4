#!/usr/bin/python3
"""Bar chart of bench/fusion_strategies.py's results: naive (--fusion=none) vs absorbed (--fusion=latent) MLA.

    /usr/bin/python3 bench/plot_fusion.py [--out out/fusion] [--png docs/fusion-strategies.png]

Reads OUT/fusion.json and writes the chart to --png and to OUT/fusion-strategies.png.  Left panel: median
prefill and decode tokens/s of both strategies for the short (64-token prompt) and long (2048-token prompt) case,
whiskers spanning the counted rounds' values, the latent/none ratio of the medians above each pair.  Right panel:
KV-cache bytes per token of context (the compiled f32 cache, all layers) and the cache bytes one decode step reads
at the report's context, from the cost report.
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
COLORS = {"none": "#c0504d", "latent": "#4f81bd"}
NAMES = {"none": "naive (--fusion=none)", "latent": "absorbed (--fusion=latent)"}
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
    if any("medians" not in strat.get(s, {}) for s in ("none", "latent")) or \
            all(v is None for s in ("none", "latent") for v in strat[s]["medians"].values()):
        errs = data.get("errors") or []
        print(f"plot_fusion: error: {src} has no measurements (the benchmark did not finish or every run failed; "
              f"{len(errs)} error(s) recorded{'; the first: ' + errs[0] if errs else ''})", file=sys.stderr)
        return 1
    missing = [f"{s} {m}" for s in ("none", "latent") for m in METRICS if strat[s]["medians"].get(m) is None]
    if missing:
        print(f"plot_fusion: warning: no value for {', '.join(missing)} (drawn as n/a)", file=sys.stderr)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [2.5, 1]})
    width = 0.38
    xs = list(range(len(METRICS)))
    top = 0.0
    for k, s in enumerate(("none", "latent")):
        raw = [strat[s]["medians"].get(m) for m in METRICS]
        med = [v or 0.0 for v in raw]
        lo, hi = [], []
        for m, v in zip(METRICS, med):
            vals = round_values(data, s, m) or [v]
            lo.append(v - min(vals))
            hi.append(max(vals) - v)
            top = max(top, max(vals))
        pos = [x + (k - 0.5) * width for x in xs]
        bars = ax.bar(pos, med, width, color=COLORS[s], label=NAMES[s], yerr=[lo, hi], capsize=3,
                      error_kw={"elinewidth": 1, "ecolor": "#333333"})
        for b, v in zip(bars, raw):
            if v is None:
                ax.text(b.get_x() + b.get_width() / 2, 0, "n/a", ha="center", va="bottom", fontsize=9)
            else:
                ax.text(b.get_x() + b.get_width() / 2, b.get_height() / 2, f"{v:.0f}", ha="center", va="center",
                        fontsize=10, color="white", fontweight="bold")
    ratios = data["ratios_latent_over_none"]
    for x, m in zip(xs, METRICS):
        r = ratios[m]["ratio_of_medians"]
        rp = ratios[m].get("median_of_pair_ratios")
        hi_val = max(max(round_values(data, s, m) or [strat[s]["medians"][m] or 0]) for s in ("none", "latent"))
        if r is not None:
            txt = f"latent/none {r:.2f}×" + (f"\n(median pair {rp:.2f}×)" if rp is not None else "")
            ax.text(x, hi_val + 0.03 * top, txt, ha="center", va="bottom", fontsize=9)
    ax.set_xticks(xs)
    ax.set_xticklabels([label(data, m) for m in METRICS], fontsize=10)
    ax.set_ylabel("tokens / s (median; whiskers: range over rounds)")
    ax.set_ylim(0, top * 1.25)
    ax.axvline(1.5, color="#999999", linewidth=0.8, linestyle=":")
    ax.legend(loc="upper left", fontsize=9.5, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    m = data["machine"]
    used = data.get("rounds_used", len(data["rounds"]))
    ax.set_title(f"{data['preset']} (bf16, {data['threads']} threads, {m.get('cpu_model') or 'CPU'}): "
                 f"medians of {used} rounds, {m['date'][:10]}", fontsize=10.5)

    # Right panel: KV-cache bytes per token of context, and the cache bytes a decode step reads at the report's
    # context (cost report, f32 cache).
    kv_tok = []
    kv_mb = []
    for s in ("none", "latent"):
        rep = strat[s].get("report", {}).get("total", {})
        kv_tok.append(strat[s].get("kv_cache", {}).get("bytes_per_position") or rep.get("kv_bytes_per_token") or 0)
        kv_mb.append(rep.get("decode_kv_mb"))
    bars = ax2.bar([0, 1], [v / 1024 for v in kv_tok], 0.6, color=[COLORS["none"], COLORS["latent"]])
    for b, v, mb in zip(bars, kv_tok, kv_mb):
        txt = f"{v:,} B"
        if mb is not None:
            txt += f"\n{mb:.1f} MB read\nper decode step"
        ax2.text(b.get_x() + b.get_width() / 2, b.get_height() + 1.5, txt, ha="center", va="bottom", fontsize=9)
    if kv_tok[0] and kv_tok[1]:
        ax2.text(0.75, 0.5, f"{kv_tok[0] / kv_tok[1]:.1f}×\nsmaller", transform=ax2.transAxes, ha="center",
                 fontsize=12, fontweight="bold", color=COLORS["latent"])
    ax2.set_xticks([0, 1])
    ax2.set_xticklabels(["naive\nper-head K/V", "absorbed\nlatent + rope"], fontsize=10)
    ax2.set_ylabel("KV cache, KiB per token of context (f32, 8 layers)")
    ax2.set_ylim(0, max(kv_tok) / 1024 * 1.45)
    ctx = None
    for s in ("none", "latent"):
        hdr = strat[s].get("report", {}).get("header", "")
        if "context" in hdr:
            ctx = hdr.rsplit("context", 1)[1].strip(" )")
    ax2.set_title("KV-cache size" + (f" (read per step at context {ctx})" if ctx else ""), fontsize=10.5)
    ax2.grid(axis="y", alpha=0.3)
    ax2.set_axisbelow(True)

    fig.tight_layout()
    outs = [args.png, os.path.join(args.out, "fusion-strategies.png")]
    for p in outs:
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
        fig.savefig(p, dpi=110)
    print("wrote " + ", ".join(outs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
