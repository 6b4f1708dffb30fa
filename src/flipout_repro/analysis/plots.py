"""One run's figures: the per-layer sparsity figure (layer-wise budgets are what pruning methods differ
in) and the accuracy-vs-sparsity curve over the run's prune events. Drawn with matplotlib's Agg backend.

matplotlib is imported when the first figure is drawn, not with this module: a run needs it only after
its last epoch (issue 18: importing it at the start cost every run its import time). The figures are
made as Agg canvases directly, without pyplot (its import and figure manager are not needed to write a
PNG); the files are the same as pyplot's.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from flipout_repro.rundir import atomic_open

FIGURE_FILE = "layer_sparsity.png"


def _figure(figsize: tuple[float, float], dpi: int) -> Any:
    """A new matplotlib Figure on its own Agg canvas (what pyplot.figure makes with the Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


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
    fig = _figure((width, 6), 110)
    top, bottom = fig.subplots(2, 1, sharex=True)
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
    with atomic_open(path, "wb") as fh:  # a fresh file: never written through a planted symlink
        fig.savefig(fh, format="png")
    return path


def run_title(cfg: DictConfig) -> str:
    """'<method> <model>-<dataset> sparsity <s> seed <n>' for figure titles."""
    return f"{cfg.method.name} {cfg.model.name}-{cfg.dataset.name} sparsity {cfg.sparsity} seed {cfg.seed}"


def write_run_curve(points: list[dict], csv_path: Path, png_path: Path, title: str = "") -> None:
    """One run's accuracy-vs-sparsity curve: test accuracy just before each prune event and at the end."""
    with atomic_open(Path(csv_path), "w") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "sparsity", "test_acc"])
        w.writeheader()
        for p in points:
            w.writerow({k: p[k] for k in ("epoch", "sparsity", "test_acc")})
    fig = _figure((5, 3.5), 120)
    ax = fig.subplots()
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
    with atomic_open(Path(png_path), "wb") as fh:
        fig.savefig(fh, format="png")
