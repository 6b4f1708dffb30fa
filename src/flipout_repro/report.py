"""Summaries -> curves (CSV + PNG) and tables. Figures are drawn with matplotlib's Agg backend."""
from __future__ import annotations

import csv
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
    xs = [p["sparsity"] for p in points]
    ax.plot(xs, [p["test_acc"] for p in points], marker="o")
    for p in points:
        ax.annotate(f"ep {p['epoch']}", (p["sparsity"], p["test_acc"]), fontsize=7,
                    textcoords="offset points", xytext=(0, 5), ha="center")
    ax.set_xlabel("sparsity (fraction of prunable weights removed)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
