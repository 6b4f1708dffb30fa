"""Accuracy against training compute: beside each accuracy-vs-sparsity figure, one protocol's final test
accuracy (mean, std over seeds as error bars, as there) against ``train_macs_fraction``, the multiply-adds
of the training that produced the result as a fraction of one dense training run (an IMP level: its whole
chain's, so several dense runs; sparse training: below one). Log x axis; one series per setting in the
colours, markers and labels of the sparsity figure (figures.py). A point is labelled with its sparsity where
another method's series has a point at that sparsity too (the levels an IMP chain passes on the way stay unlabelled)
or its series has few points. Only cells that recorded their compute are drawn; controls are not (their
section of the report compares them with their parents). PNG and PDF side by side, the points in a CSV.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
import pandas as pd  # noqa: E402

from flipout_repro.figure_style import fit_title, keep_labels_clear, save_png_and_pdf, series_styles  # noqa: E402
from flipout_repro.reporting.figures import COLORS, X_AXES, color_of, legend_right, series_of, wrap_title  # noqa: E402
from flipout_repro.rundir import atomic_open, atomic_write_text  # noqa: E402

COMPUTE_CSV = ["method", "setting", "label", "sparsity", "train_macs_fraction", "acc_mean", "acc_std", "n_seeds"]


def plot_compute(cells: pd.DataFrame, title: str, png: Path, csv: Path, x_axis: str = "nominal") -> list[Path]:
    """Draw one protocol's cells that have ``train_macs_fraction`` to ``png`` (and ``.pdf``), their points
    to ``csv``; ``x_axis`` (figures.X_AXES) picks the sparsity each point is labelled with. [] and nothing
    written when no cell has it."""
    fig, points = draw_compute(cells, title, x_axis)
    if fig is None:
        return []
    written = save_png_and_pdf(fig, png, atomic_open)
    atomic_write_text(csv, pd.DataFrame(points, columns=COMPUTE_CSV).to_csv(index=False, float_format="%.6g"))
    return written + [csv]


def sparsity_text(s: float) -> str:
    """0.9 -> '90%', 0.99609375 -> '99.61%', 0 -> 'dense'."""
    return "dense" if s == 0 else f"{100 * s:.4g}%"


def draw_compute(cells: pd.DataFrame, title: str, x_axis: str = "nominal") -> tuple[plt.Figure | None, list[dict]]:
    """The figure of :func:`plot_compute` (not yet written) and its points; (None, []) without a cell that
    has a training compute."""
    others = sorted(m for m in cells["method"].unique() if m not in COLORS)
    ours = cells[cells["n_seeds"].fillna(0) > 0]
    groups = series_of(ours)  # the sparsity figure's series, so both figures style a setting alike
    styles = series_styles([(m, s) for m, s, _, _ in groups], lambda m: color_of(m, others))
    drawn = [(m, s, g[g["train_macs_fraction"].notna()], lab) for m, s, g, lab in groups]
    drawn = [(m, s, g, lab) for m, s, g, lab in drawn if len(g) and m != "control"]
    if not drawn:
        return None, []
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=130)
    target, outcome = X_AXES[x_axis][:2]
    points, notes, placed = [], [], set()
    shared = _shared_sparsities([(m, g.assign(_sp=_sparsity(g, target, outcome))) for m, _, g, _ in drawn])
    for m, s, g, lab in drawn:
        st = styles[(m, s)]
        g = g.assign(_sp=_sparsity(g, target, outcome)).sort_values("_sp")
        x, y = g["train_macs_fraction"].to_numpy(float), g["final_mean"].to_numpy(float)
        err, n = g["final_std"].fillna(0).to_numpy(float), g["n_seeds"].astype(int).to_numpy()
        seeds = f" [n={n[0]}]" if len(set(n)) == 1 else f" [n={n.min()}-{n.max()}]"
        ax.plot(x, y, color=st["color"], ls=st["ls"], lw=1.0, marker=st["marker"], ms=6, label=lab + seeds)
        many = n > 1  # error bars where there are seeds to take a std of, as in the sparsity figure
        if many.any():
            ax.errorbar(x[many], y[many], yerr=err[many], color=st["color"], capsize=3, ls="none", lw=1.0)
        for xi, yi, v in zip(x, y, g["_sp"]):
            key = (sparsity_text(v), round(math.log(xi), 2) if xi > 0 else 0, round(yi, 1))
            if (len(g) <= 6 or round(v, 9) in shared) and key not in placed:  # one label for a point drawn twice
                placed.add(key)
                notes.append(ax.annotate(sparsity_text(v), (xi, yi), fontsize=7, color=st["color"], xytext=(5, 4),
                                         textcoords="offset points"))
        points += [dict(zip(COMPUTE_CSV, (m, s, lab, v, xi, yi, r.final_std, r.n_seeds)))
                   for xi, yi, v, r in zip(x, y, g["_sp"], g.itertuples())]
    _axes(ax, [p["train_macs_fraction"] for p in points], [(p["acc_mean"], p["acc_std"]) for p in points], title,
          x_axis)
    fig.canvas.draw()
    keep_labels_clear(ax, notes, avoid=_marker_boxes(ax, points))
    return fig, points


def _sparsity(g: pd.DataFrame, target: str, outcome: str) -> pd.Series:
    """Each cell's sparsity on the chosen axis: the achieved one where it is an outcome, else the target."""
    return g[outcome].where(g["sparsity_is_outcome"].astype(bool), g[target]).fillna(g["target_sparsity"]).astype(float)


def _shared_sparsities(groups: list[tuple[str, pd.DataFrame]]) -> set[float]:
    """The sparsities (rounded) at which the series of at least two methods have a point."""
    seen: dict[float, set[str]] = {}
    for m, g in groups:
        for v in {round(float(v), 9) for v in g["_sp"]}:
            seen.setdefault(v, set()).add(m)
    return {v for v, methods in seen.items() if len(methods) > 1}


def _marker_boxes(ax: plt.Axes, points: list[dict], half_px: float = 6.0) -> list[Bbox]:
    """The display boxes of the drawn markers, which a sparsity label must not cover."""
    xy = ax.transData.transform([(p["train_macs_fraction"], p["acc_mean"]) for p in points])
    return [Bbox.from_extents(x - half_px, y - half_px, x + half_px, y + half_px) for x, y in xy]


def _axes(ax: plt.Axes, xs: list[float], ys: list[tuple[float, float]], title: str, x_axis: str) -> None:
    """Log x axis over the compute drawn (at least a factor of 10 around it, with 1 = one dense run marked),
    the y range over the points and their bars, the legend right of the axes, the title wrapped to fit."""
    ax.set_xscale("log")
    lo, hi = min(xs), max(xs)
    mid = math.sqrt(lo * hi) if lo > 0 else hi
    lo, hi = min(lo, mid / math.sqrt(10)), max(hi, mid * math.sqrt(10))
    ax.set_xlim(lo / 1.3, hi * 1.3)
    if lo / 1.3 < 1 < hi * 1.3:
        ax.axvline(1.0, color="gray", lw=0.8, ls=":", label="one dense training run")
    low = min(m - (0 if np.isnan(s) else s) for m, s in ys)
    high = max(m + (0 if np.isnan(s) else s) for m, s in ys)
    pad = max(0.08 * (high - low), 0.5)
    ax.set_ylim(low - pad, high + 2 * pad)  # room above for the labels
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
    # between the powers of ten, 2× and 5× their value labelled too (a narrow range has few powers)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}×" if round(v / 10 ** math.floor(math.log10(v) + 1e-9)) in (2, 5) else ""))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("training compute (multiply-adds, × one dense training run, log scale); labels: "
                  + ("effective " if x_axis == "effective" else "") + "sparsity")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="major")
    legend_right(ax, *ax.get_legend_handles_labels())
    fit_title(ax, title, wrap_title)
