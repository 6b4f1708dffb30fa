"""The comparison figure of one protocol (a forest plot): for each sparsity, one row per setting with its
difference to the baseline (final test accuracy, points) and the 95 % interval of that difference; a
filled marker when the interval excludes zero, a hollow one when it does not, a cross without interval.
The x range follows the rows that did not collapse (more than figure_style.COLLAPSE_GAP points below the
best row of their sparsity, or the baseline): a collapsed row is a triangle at the left edge, its value
written on the right as every row's. The title is wrapped until it fits.
Several settings of one method take clearly different shades of its colour (figure_style.py);
rows sort with numbers by value (method.p=2, 3, 10). PNG and PDF are written side by side.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from flipout_repro.figure_style import (COLLAPSE_GAP, collapsed, fit_title, mark_off_axis,  # noqa: E402
                                       natural_key, save_png_and_pdf, series_styles)
from flipout_repro.reporting.figures import COLORS, color_of, wrap_title  # noqa: E402
from flipout_repro.rundir import atomic_open, atomic_write_text  # noqa: E402
from flipout_repro.reporting.sections import fmt_sparsity  # noqa: E402

FOREST_CSV = ["sparsity", "method", "label", "diff", "lo", "hi", "kind", "verdict", "n_seeds"]


def forest_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """The compared cells (those with a difference to the baseline), sparsity by sparsity."""
    rows = cells[cells["base_diff"].notna()] if "base_diff" in cells else cells.iloc[0:0]
    out = pd.DataFrame({
        "sparsity": rows["target_sparsity"], "method": rows["method"],
        "label": rows["label"],
        "diff": rows["base_diff"], "lo": rows["base_lo"], "hi": rows["base_hi"], "kind": rows["base_kind"],
        "verdict": rows["verdict"], "n_seeds": rows["n_seeds"]}, columns=FOREST_CSV)
    return out.sort_values(["sparsity", "label"], key=lambda c: c.map(natural_key) if c.name == "label" else c,
                           kind="stable").reset_index(drop=True)


def _x_range(rows: pd.DataFrame) -> tuple[float, float]:
    """The difference axis over the rows that did not collapse (their intervals) and zero, padded; room at
    the left edge for the collapsed rows' markers."""
    values = [0.0, *rows["diff"].dropna(), *rows["lo"].dropna(), *rows["hi"].dropna()]
    lo, hi = min(values), max(values)
    span = max(hi - lo, 1.0)
    return lo - 0.12 * span, hi + 0.06 * span


def plot_forest(cells: pd.DataFrame, baseline: str, title: str, png: Path, csv: Path) -> bool:
    """Draw the forest plot of ``cells`` to ``png`` and its rows to ``csv``; False (nothing written) when no
    cell was compared with the baseline."""
    rows = forest_rows(cells)
    if rows.empty:
        return False
    others = sorted(m for m in cells["method"].unique() if m not in COLORS)  # as the accuracy figure's
    groups = list(rows.groupby("sparsity", sort=True))
    styles = series_styles(list(zip(rows["method"], rows["label"])), lambda m: color_of(m, others))
    n_lines = len(rows) + len(groups)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * n_lines), dpi=130)
    best = rows.groupby("sparsity")["diff"].transform("max").clip(lower=0.0)  # the baseline itself is at 0
    low = pd.Series(collapsed(rows["diff"], best), index=rows.index)
    y, ticks, labels = 0, [], []
    for sparsity, g in groups:
        ax.text(0.0, y, f"sparsity {fmt_sparsity(sparsity)}", transform=ax.get_yaxis_transform(), ha="left",
                va="center", fontsize=8, fontweight="bold", zorder=3,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # the zero line runs under it
        y -= 1
        for r in g.itertuples():
            color = styles[(r.method, r.label)]["color"]
            if low[r.Index]:  # collapsed: at the left edge; its value is written on the right as every row's
                mark_off_axis(ax, [y], [r.diff], color, axis="x", text=False)
            elif pd.isna(r.lo):
                ax.plot(r.diff, y, marker="x", color=color, ms=6)
            else:
                filled = r.verdict in ("better", "worse")
                ax.errorbar(r.diff, y, xerr=[[r.diff - r.lo], [r.hi - r.diff]], color=color, capsize=3, lw=1.4,
                            marker="o", ms=6, mfc=color if filled else "white", mec=color)
            value = f"{r.diff:+.2f}" + ("" if pd.isna(r.lo) else f" [{r.lo:+.2f}, {r.hi:+.2f}]")
            ax.text(1.01, y, value, transform=ax.get_yaxis_transform(), va="center", fontsize=7)
            ticks.append(y)
            labels.append(f"{r.label}  (n={int(r.n_seeds)}{', paired' if r.kind == 'paired' else ''})")
            y -= 1
        y -= 0.3
    ax.axvline(0, color="black", lw=1, ls="--")
    ax.set_xlim(*_x_range(rows[~low]))
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_ylim(y + 0.5, 1.4)  # the top row holds the legend
    ax.set_xlabel(f"final test accuracy minus {baseline}'s (points), 95 % interval")
    ax.grid(axis="x", alpha=0.3)
    ax.plot([], [], "o", color="gray", label="interval excludes 0")
    ax.plot([], [], "o", color="gray", mfc="white", label="within noise")
    ax.plot([], [], "x", color="gray", label="< 2 seeds: no interval")
    if low.any():
        ax.plot([], [], "<", color="gray", label=f"collapsed (> {COLLAPSE_GAP:g} points below the best)")
    ax.legend(fontsize=7, loc="upper right", ncol=4 if low.any() else 3, frameon=True, facecolor="white", edgecolor="none",
              framealpha=1.0, borderaxespad=0.1)  # opaque: the zero line may run under it
    fit_title(ax, title, wrap_title, 75)
    save_png_and_pdf(fig, png, atomic_open)
    atomic_write_text(csv, rows.to_csv(index=False, float_format="%.6g"))
    return True
