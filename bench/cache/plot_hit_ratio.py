#!/usr/bin/env python3
"""Plots bench/cache/hit_ratio.csv (written by `cargo bench -p basis-cache --bench hit_ratio`)
into bench/cache/hit_ratio.png.

    python3 bench/cache/plot_hit_ratio.py
"""
import csv
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"])


def main():
    ensure_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(HERE / "hit_ratio.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    sizes = [f"{r['cache_percent']}%\n({r['entries']} entries)" for r in rows]
    series = [
        ("lru", "basis-cache LRU"),
        ("tinylfu", "basis-cache TinyLFU"),
        ("moka_tinylfu_unweighted", "moka TinyLFU, entry-counted (reference)"),
        ("pinned_top", "top-N keys pinned (ideal)"),
    ]
    width = 0.2
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (column, label) in enumerate(series):
        xs = [j + (i - 1.5) * width for j in range(len(rows))]
        ys = [100 * float(r[column]) for r in rows]
        bars = ax.bar(xs, ys, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(range(len(rows)), sizes)
    ax.set_ylabel("hit ratio (%)")
    ax.set_ylim(0, 100)
    ax.set_title("L1 hit ratio under Zipf(s=1.0), 100,000 keys, 2M requests")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "hit_ratio.png", dpi=120)
    print(f"wrote {HERE / 'hit_ratio.png'}")


if __name__ == "__main__":
    main()
