"""One run's figures: the per-layer sparsity figure (layer-wise budgets are what pruning methods differ
in) and the accuracy-vs-sparsity curve over the run's prune events. Drawn with matplotlib's Agg backend,
each written as PNG and PDF (vector) side by side (figure_style.py).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from flipout_repro.figure_style import MIN_ACC_SPAN, keep_labels_clear, save_png_and_pdf, thin_ticks
from flipout_repro.rundir import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(figsize: tuple[float, float], dpi: int) -> "Figure":
    """A new matplotlib Figure on its own Agg canvas (what pyplot makes with the Agg backend). matplotlib is
    imported here, when the first figure is drawn, not with this module: a run needs it only after its
    last epoch, and pyplot (its import, its figure manager) is not needed to write a file."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig

FIGURE_FILE = "layer_sparsity.png"


def draw_layer_sparsity(layers: dict[str, dict[str, Any]], title: str = "") -> "Figure":
    """The layer figure (see :func:`plot_layer_sparsity`), not yet written."""
    names = [n[: -len(".weight")] if n.endswith(".weight") else n for n in layers]
    rows = list(layers.values())
    xs = list(range(len(rows)))
    sparsity = 1.0 - sum(r["remaining"] for r in rows) / sum(r["prunable"] for r in rows)
    rotate = 90 if len(rows) > 8 else 0
    colors = ["tab:red" if r["collapsed"] else "tab:blue" for r in rows]
    width = min(40.0, max(6.0, 0.22 * len(rows) + 3))
    fig = _figure((width, 6.4), 110)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(xs, [100 * r["sparsity"] for r in rows], color=colors)
    top.set_ylabel("sparsity (%)")
    top.set_ylim(0, 100)
    top.axhline(100 * sparsity, color="k", lw=0.8, ls="--", label=f"global sparsity {100 * sparsity:.4g} %")
    if len(rows) <= 60:  # each layer's value above the panel, where no bar or line can cover it
        values = top.secondary_xaxis("top")
        values.set_xticks(xs, [f"{100 * r['sparsity']:.4g}" for r in rows], fontsize=6 if rotate else 7,
                          rotation=rotate)
        values.tick_params(length=0)
        values.set_xlabel("sparsity of each layer (%)", fontsize=7)
    bottom.bar(xs, [r["prunable"] for r in rows], color="lightgray", label="prunable")
    bottom.bar(xs, [r["remaining"] for r in rows], color=colors)
    bottom.bar([], [], color="tab:blue", label="kept")  # the legend's swatch: blue even if a red bar is last
    bottom.set_yscale("log")
    floor = 0.5  # a layer with no weight left has no bar on a log axis: a marker on the floor says so
    bottom.set_ylim(floor, max(r["prunable"] for r in rows) * 3)
    dead = [x for x, r in zip(xs, rows) if r["remaining"] == 0]
    if dead:
        bottom.plot(dead, [floor] * len(dead), ls="none", marker="X", ms=9, color="tab:red", clip_on=False,
                    zorder=5, label="no weight left")
        for x in dead:
            bottom.annotate("0 left", (x, floor), xytext=(0, 8), textcoords="offset points", ha="center",
                            va="bottom", rotation=90, fontsize=7, color="tab:red", fontweight="bold")
    bottom.set_ylabel("weights (log scale)")
    for x, r in zip(xs, rows):
        if r["collapsed"]:  # white on its red bar
            top.annotate("collapsed", (x, 50), rotation=90, fontsize=7, color="white", ha="center", va="center")
    bottom.set_xticks(xs)
    bottom.set_xticklabels(names, rotation=90, fontsize=6 if len(rows) > 30 else 8)
    top.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    for ax in (top, bottom):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_layer_sparsity(layers: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """Bars per prunable layer, in model order: sparsity (%) on top (each layer's value printed above the
    panel, the global sparsity as a dashed line), and kept against prunable weights (log scale) below;
    collapsed layers (no weight left) in red, with a marker and "0 left" on the log axis's floor.
    ``layers`` is the ``"layers"`` entry of :func:`flipout_repro.analysis.layer_report` (or of a
    summary.json). Writes ``path`` (PNG) and the same name with ``.pdf``; returns ``path``."""
    return save_png_and_pdf(draw_layer_sparsity(layers, title), Path(path), atomic_open)[0]


def run_title(cfg: DictConfig) -> str:
    """'<method> <model>-<dataset> sparsity <s> seed <n>' for figure titles."""
    return f"{cfg.method.name} {cfg.model.name}-{cfg.dataset.name} sparsity {cfg.sparsity} seed {cfg.seed}"


def remaining_log_x(sparsity: float) -> float:
    """The run curve's x: -log10(fraction of weights remaining); each tenfold cut is one unit."""
    return -math.log10(max(1.0 - sparsity, 1e-6))


def draw_run_curve(points: list[dict], title: str = "") -> "Figure":
    """The run curve (see :func:`write_run_curve`), not yet written."""
    fig = _figure((5.5, 3.8), 120)
    ax = fig.subplots()
    # x = -log10(1 - s): the geometric schedule's points spread out instead of piling up near 1
    xs = [remaining_log_x(p["sparsity"]) for p in points]
    ys = [p["test_acc"] for p in points]
    ax.plot(xs, ys, marker="o", ms=5, color="tab:blue")
    lo, hi = min(ys), max(ys)
    pad = max(0.0, MIN_ACC_SPAN - (hi - lo)) / 2
    lo, hi = max(0.0, lo - pad), min(100.0, hi + pad)
    if hi - lo < MIN_ACC_SPAN:  # pinned at 0 or 100: take the span from the other side
        lo, hi = (0.0, MIN_ACC_SPAN) if lo == 0.0 else (100.0 - MIN_ACC_SPAN, 100.0)
    margin = 0.18 * (hi - lo)  # room for the epoch labels
    ax.set_ylim(max(0.0, lo - margin), hi + margin)
    x_lo, x_hi = min(xs), max(xs)
    x_pad = max(0.08 * (x_hi - x_lo), 0.25)
    ax.set_xlim(x_lo - x_pad, x_hi + x_pad)
    # a labelled tick at each sparsity drawn (those too close to a labelled one: unlabelled minor ticks)
    drawn = sorted(set(round(x, 9) for x in xs))
    labelled = thin_ticks(drawn, (x_hi - x_lo) + 2 * x_pad, 0.07, keep_first=[drawn[0], drawn[-1]])
    sparsity_at = {round(x, 9): p["sparsity"] for x, p in zip(xs, points)}
    ax.set_xticks(labelled, [f"{100 * sparsity_at[x]:.4g}" for x in labelled], fontsize=8,
                  rotation=45 if len(labelled) > 6 else 0)
    ax.set_xticks([x for x in drawn if x not in labelled], minor=True)
    ax.set_xlabel("sparsity, % removed (log scale of remaining weights)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    texts = []
    for i, (x, p) in enumerate(zip(xs, points)):  # above, on the side the line does not go
        after = ys[i + 1] - ys[i] if i + 1 < len(ys) else (ys[i] - ys[i - 1] if i else 0.0)
        side = 0 if after == 0 or i + 1 == len(ys) and after > 0 else (1 if after < 0 else -1)
        texts.append(ax.annotate(f"ep {p['epoch']}", (x, p["test_acc"]), fontsize=7, textcoords="offset points",
                                 xytext=(4 * side, 5), ha={0: "center", 1: "left", -1: "right"}[side],
                                 va="bottom"))
    fig.draw_without_rendering()  # lays the figure out (tick labels, text sizes) without rasterising it
    from matplotlib.transforms import Bbox

    marks = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    keep_labels_clear(ax, texts, avoid=[Bbox.from_bounds(mx - 3, my - 3, 6, 6)
                                        for mx, my in marks])
    return fig


def write_run_curve(points: list[dict], csv_path: Path, png_path: Path, title: str = "") -> None:
    """One run's accuracy-vs-sparsity curve: test accuracy just before each prune event and at the end,
    as CSV and as a figure (PNG + PDF beside it)."""
    with atomic_open(Path(csv_path), "w") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "sparsity", "test_acc"])
        w.writeheader()
        for p in points:
            w.writerow({k: p[k] for k in ("epoch", "sparsity", "test_acc")})
    save_png_and_pdf(draw_run_curve(points, title), Path(png_path), atomic_open)
