#!/usr/bin/env python3
"""Plots and tabulates `kvtier-bench sim` results.

usage: scripts/plot_sim.py [--out DIR] RESULT.json...

Single-tier result files (no run with tier2_blocks > 0) give hit_rate_blocks.png and
hit_rate_tokens.png: prefix hit rate against capacity (fraction of the
trace's unique blocks), one panel per trace, one line per policy, Belady's
MIN dashed. tables.md gets one markdown table per trace (cells: block hit
rate / token hit rate; "gap" is the share of the LRU -> Belady gap that
adaptive-2q closes) and one for the two-tier runs.
"""
import argparse
import json
import os
import sys

POLICY_ORDER = ["lru", "priority-lru", "prefix-lru", "s3fifo", "adaptive-2q", "belady"]


TRACE_ORDER = ["conversation", "synthetic", "agentic"]


def load(paths):
    traces = []
    for p in paths:
        with open(p) as f:
            traces.append(json.load(f))
    rank = {n: i for i, n in enumerate(TRACE_ORDER)}
    traces.sort(key=lambda d: (rank.get(d["trace"]["name"], len(rank)), d["trace"]["name"]))
    return traces


def order(policies):
    known = [p for p in POLICY_ORDER if p in policies]
    return known + sorted(p for p in policies if p not in POLICY_ORDER)


def is_two_tier(d):
    return any(r["tier2_blocks"] > 0 for r in d["runs"])


def single_tier(d):
    return [] if is_two_tier(d) else d["runs"]


def plot(traces, out, metric, ylabel, fname):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [d for d in traces if single_tier(d)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, d in zip(axes[0], panels):
        runs = single_tier(d)
        for pol in order({r["policy"] for r in runs}):
            pts = sorted((r["tier1_fraction"] * 100, r[metric]) for r in runs if r["policy"] == pol)
            xs, ys = zip(*pts)
            style = dict(linestyle="--", color="black") if pol == "belady" else dict(marker="o", markersize=3)
            ax.plot(xs, ys, label=pol, **style)
        ideal = d["trace"]["ideal_block_hit_rate" if metric.startswith("block") else "ideal_token_hit_rate"]
        ax.axhline(ideal, color="grey", linewidth=0.8, linestyle=":", label="infinite cache")
        ax.set_xscale("log")
        ticks = sorted({round(r["tier1_fraction"] * 100) for r in runs})
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t}%" for t in ticks], fontsize=7)
        ax.minorticks_off()
        t = d["trace"]
        ax.set_title(f'{t["name"]} ({t["requests"]} requests, {t["unique_blocks"]} blocks)', fontsize=9)
        ax.set_xlabel("capacity (% of unique blocks)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, fname), dpi=130)
    plt.close(fig)


def tables(traces):
    lines = []
    for d in traces:
        runs = single_tier(d)
        if not runs:
            continue
        t = d["trace"]
        pols = order({r["policy"] for r in runs})
        lines.append(f'### {t["name"]}: {t["requests"]} requests, {t["block_refs"]} block references, '
                     f'{t["unique_blocks"]} unique blocks of {t["block_tokens"]} tokens; infinite cache '
                     f'{t["ideal_block_hit_rate"]:.4f} / {t["ideal_token_hit_rate"]:.4f}')
        lines.append("")
        lines.append("| capacity | blocks | " + " | ".join(pols) + " | gap closed |")
        lines.append("|---" * (len(pols) + 3) + "|")
        caps = sorted({(r["tier1_fraction"], r["tier1_capacity"], r["tier1_blocks"]) for r in runs})
        for frac, text, blocks in caps:
            at = {r["policy"]: r for r in runs if r["tier1_blocks"] == blocks}
            cells = []
            for p in pols:
                r = at.get(p)
                cells.append("-" if r is None else f'{r["block_hit_rate"]:.4f} / {r["token_hit_rate"]:.4f}')
            gap = at.get("adaptive-2q", {}).get("gap_closed_vs_lru")
            gap_s = "-" if gap is None else f"{gap:.2f}"
            lines.append(f"| {text} | {blocks} | " + " | ".join(cells) + f" | {gap_s} |")
        lines.append("")
    two = [(d, d["runs"]) for d in traces if is_two_tier(d)]
    if two:
        lines.append("### Two tiers (host + NVMe model)")
        lines.append("")
        lines.append("| trace | host + NVMe | host policy | NVMe policy | admission | hit rate blk / tok | "
                     "host hits | NVMe hits | demotions | refused | Belady |")
        lines.append("|---" * 11 + "|")
        for d, rs in two:
            bel = {r["tier1_blocks"]: r for r in rs if r["policy"] == "belady"}
            for r in rs:
                if r["policy"] == "belady":
                    continue
                b = bel.get(r["tier1_blocks"] + r["tier2_blocks"])
                lines.append(
                    f'| {d["trace"]["name"]} | {r["tier1_capacity"]} + {r["tier2_capacity"]} | {r["policy"]} | '
                    f'{r["tier2_policy"]} | {r["admission"]} | {r["block_hit_rate"]:.4f} / {r["token_hit_rate"]:.4f} | '
                    f'{r["tier1_hits"]} | {r["tier2_hits"]} | {r["demotions"]} | {r["admission_refused"]} | '
                    f'{"-" if b is None else format(b["block_hit_rate"], ".4f")} |')
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".", help="output folder")
    ap.add_argument("results", nargs="+", help="JSON files written by kvtier-bench sim --json-out")
    a = ap.parse_args()
    traces = load(a.results)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tables.md"), "w") as f:
        f.write(tables(traces))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_sim.py: no matplotlib in this python3; wrote tables.md only", file=sys.stderr)
        return 0
    plot(traces, a.out, "block_hit_rate", "prefix hit rate (blocks)", "hit_rate_blocks.png")
    plot(traces, a.out, "token_hit_rate", "prefix hit rate (tokens)", "hit_rate_tokens.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
