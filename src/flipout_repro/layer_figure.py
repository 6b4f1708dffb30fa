"""A run's per-layer sparsity figure (layer-wise budgets are what pruning methods differ in)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIGURE_FILE = "layer_sparsity.png"


def plot_layer_sparsity(layers: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """Bars per prunable layer, in model order: sparsity (%) on top, and kept against prunable weights
    (log scale) below; collapsed layers (no weight left) in red. ``layers`` is the ``"layers"`` entry of
    :func:`flipout_repro.analysis.layer_report` (or of a summary.json). Returns ``path``."""
    names = [n[: -len(".weight")] if n.endswith(".weight") else n for n in layers]
    rows = list(layers.values())
    xs = range(len(rows))
    sparsity = 1.0 - sum(r["remaining"] for r in rows) / sum(r["prunable"] for r in rows)
    rotate = 90 if len(rows) > 8 else 0  # many bars: vertical labels inside the bars
    colors = ["tab:red" if r["collapsed"] else "tab:blue" for r in rows]
    width = min(40.0, max(5.0, 0.22 * len(rows) + 2))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 6), dpi=110, sharex=True)
    top.bar(xs, [100 * r["sparsity"] for r in rows], color=colors)
    top.set_ylabel("sparsity (%)")
    top.set_ylim(0, 100 if rotate else 108)
    top.axhline(100 * sparsity, color="k", lw=0.8, ls="--", label=f"global {100 * sparsity:.4g} %")
    top.legend(loc="lower right", fontsize=8)
    bottom.bar(xs, [r["prunable"] for r in rows], color="lightgray", label="prunable")
    bottom.bar(xs, [r["remaining"] for r in rows], color=colors,
               label="kept")
    bottom.set_yscale("log")
    bottom.set_ylabel("weights")
    bottom.legend(loc="upper left", fontsize=8)
    for x, r in zip(xs, rows):
        if r["collapsed"]:  # white on its red bar
            top.annotate("collapsed", (x, 50), rotation=90, fontsize=7, color="white", ha="center", va="center")
        elif len(rows) <= 30:
            inside = rotate and r["sparsity"] > 0.3
            top.annotate(f"{100 * r['sparsity']:.4g}", (x, 100 * r["sparsity"]), fontsize=6, ha="center",
                         va="top" if inside else "bottom", rotation=rotate, color="white" if inside else "k",
                         xytext=(0, -2 if inside else 1), textcoords="offset points")
    bottom.set_xticks(list(xs))
    bottom.set_xticklabels(names, rotation=90, fontsize=6 if len(rows) > 30 else 8)
    if title:
        top.set_title(title, fontsize=9)
    for ax in (top, bottom):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
