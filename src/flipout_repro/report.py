"""Summaries -> curves (CSV + PNG) and tables. Figures are drawn with matplotlib's Agg backend."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_run_curve(points: list[dict], csv_path: Path, png_path: Path, title: str = "") -> None:
    """One run's accuracy-vs-sparsity curve: test accuracy just before each prune event and at the end."""
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "sparsity", "test_acc"])
        w.writeheader()
        for p in points:
            w.writerow({k: p[k] for k in ("epoch", "sparsity", "test_acc")})
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    # x = -log10(1 - s): every tenfold cut of the remaining weights is one unit, so the geometric
    # schedule's points spread out instead of piling up near 1
    to_x = lambda s: -math.log10(max(1.0 - s, 1e-6))  # noqa: E731
    xs = [to_x(p["sparsity"]) for p in points]
    ax.plot(xs, [p["test_acc"] for p in points], marker="o")
    for x, p in zip(xs, points):
        ax.annotate(f"ep {p['epoch']}", (x, p["test_acc"]), fontsize=7,
                    textcoords="offset points", xytext=(0, 5), ha="center")
    ticks = [t for t in (0.0, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999) if to_x(t) <= max(xs) + 0.3]
    ax.set_xticks([to_x(t) for t in ticks], [f"{t:g}" for t in ticks])
    ax.set_xlabel("sparsity (log scale of the weights removed)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
