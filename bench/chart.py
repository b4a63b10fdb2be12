#!/usr/bin/env python3
"""The chart of BENCHMARKS.md: evt's speed over the best peer's, per backend and workload, from
the rows `compare.py --summary` writes. Bars right of 1× are evt ahead; each round is a dot.

Usage: chart.py SUMMARY.json OUT.png [SETTING]   (scripts/compare runs it in a virtualenv with
matplotlib; SETTING, e.g. "synchronous_commit=off", goes into the title)
"""

import json
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    rows = json.load(open(sys.argv[1]))
    rows = sorted(rows, key=lambda r: (r["backend"], r["workload"], r["variant"]), reverse=True)
    labels = [f"{r['backend']}  {r['workload']}" + (f" ({r['variant']})" if r["variant"] else "")
              + f"  vs {r['best_peer']}" for r in rows]
    speedups = [r["speedup"] for r in rows]
    colors = ["#2e7d32" if s >= 1 else "#c62828" for s in speedups]

    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.4), dpi=110)
    y = range(len(rows))
    ax.barh(y, speedups, color=colors, alpha=0.85, height=0.6)
    for i, row in enumerate(rows):
        ax.plot(row["speedup_rounds"], [i] * len(row["speedup_rounds"]), "k.", markersize=4)
        ax.text(max(speedups) * 1.15, i, f"{row['speedup']:.2f}×", va="center", fontsize=9)
    ax.axvline(1, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=9)
    low, high = min(0.5, min(speedups) / 1.5), max(speedups) * 2.2
    ax.set_xlim(low, high)
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128) if low <= t <= high]
    ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("evt's speed ÷ the best peer's (median of rounds; dots: each round; W2: time ratio inverted)")
    setting = f"\n{sys.argv[3]}" if len(sys.argv) > 3 else ""
    ax.set_title(f"evt beside evtstore 12 and cqrs-es 0.5, back to back on one machine{setting}",
                 fontsize=11)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
