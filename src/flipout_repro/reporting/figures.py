"""Accuracy-vs-sparsity figures drawn like the FlipOut paper's: one per model, data set and protocol, its
title the protocol in words.

Logit-scaled sparsity axis with labelled ticks at the paper's five levels and at every sparsity drawn
(where the labels fit), one line per method and setting with its own shade of the method's colour, its
own marker and line style (figure_style.py), error bars (std over seeds) where a cell has two
seeds or more (a single seed is a marker without bar; the legend gives the seed counts, ``[n=1]``), the
dense baseline as a dashed line with its std band, methods whose sparsity is an outcome (Hoyer-Square)
as points at their achieved sparsity, and the published values as faint hollow markers of the same
colour. The axes follow what is drawn: x from the smallest to the largest sparsity, y over the points that
did not collapse (a point more than figure_style.COLLAPSE_GAP points below the best at its sparsity is a
triangle at the bottom edge with its value). The legend follows the paper's method order, then the settings with numbers by value
(method.p=2, 3, 10). PNG and PDF are written side by side. The x axis may show the effective sparsity instead
(``flipout-report --x effective``, X_AXES); its label says which.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import numpy as np  # noqa: E402

from flipout_repro.figure_style import (COLLAPSE_GAP, MIN_ACC_SPAN, collapsed, fit_title,  # noqa: E402
                                       keep_labels_clear, mark_off_axis, natural_key, save_png_and_pdf,
                                       series_styles, thin_ticks)
from flipout_repro.rundir import atomic_open, atomic_write_text  # noqa: E402
from flipout_repro.config.schema import SPARSITY_HINTS  # noqa: E402
from flipout_repro.reporting.tables import METHOD_ORDER, label_parts  # noqa: E402

COLORS = {"dense": "black", "flipout": "tab:red", "global_magnitude": "tab:blue", "snip": "tab:green",
          "random": "tab:gray", "flipout_no_noise": "tab:orange", "noisy_global_magnitude": "tab:purple",
          "hoyer_square": "tab:brown", "group_hoyer_square": "sienna", "layer_magnitude": "tab:cyan",
          "gradual_magnitude": "navy", "iter_snip": "olivedrab", "force": "darkgreen", "str": "tab:pink",
          "weightmom": "goldenrod", "rigl": "tab:olive", "set": "teal", "static": "slategray",
          "grasp": "darkorange", "synflow": "indigo", "imp": "darkviolet", "control": "dimgray"}
_EXTRA = ["tab:pink", "tab:olive", "tab:cyan", "gold", "navy", "teal", "maroon", "lime"]
_RANK = {m: i for i, m in enumerate(METHOD_ORDER)}
POINTS_CSV = ["method", "setting", "label", "kind", "sparsity", "acc_mean", "acc_std", "n_seeds"]
#: The sparsity a figure's x axis shows (flipout-report --x): the cells' column for a point at its target
#: and for one whose sparsity is an outcome, and the axis label.
X_AXES = {"nominal": ("target_sparsity", "achieved_mean", "sparsity (% of prunable weights removed, logit scale)"),
          "effective": ("effective_mean", "effective_mean", "effective sparsity (% of prunable weights removed or on"
                        " no input-output path, logit scale)")}


def color_of(method: str, others: list[str]) -> str:
    """A fixed colour per shipped method (the same in every figure of a report); other methods take the
    next free colour of ``others`` (the unknown methods of the whole table, so both figures agree)."""
    if method in COLORS:
        return COLORS[method]
    return _EXTRA[others.index(method) % len(_EXTRA)] if method in others else _EXTRA[0]


def plot_pair(cells: pd.DataFrame, title: str, png: Path, csv: Path, x: str = "nominal") -> list[Path]:
    """Draw one protocol's cells (with their paper_* columns) to ``png`` and the same name with
    ``.pdf`` (vector); the points to ``csv``; ``x``: a key of X_AXES. Returns the figure files."""
    fig, points = draw_pair(cells, title, x)
    written = save_png_and_pdf(fig, png, atomic_open)
    atomic_write_text(csv, pd.DataFrame(points, columns=POINTS_CSV).to_csv(index=False, float_format="%.6g"))
    return written


def wrap_title(title: str, width: int = 95) -> str:
    """``title``'s lines wrapped at ``width`` characters between its ``key=value`` parts, never inside one
    (``optim.milestones=[77, 154, 230]`` stays whole)."""
    out = []
    for line in title.split("\n"):
        row = ""
        for part in label_parts(line):
            if row and len(row) + 2 + len(part) > width:
                out.append(row + ",")
                row = part
            else:
                row = f"{row}, {part}" if row else part
        out.append(row)
    return "\n".join(out)


#: Characters of a legend entry's line: a longer label wraps between its key=value parts, so the legend
#: never squeezes the axes.
LEGEND_WIDTH = 50


def legend_right(ax: plt.Axes, handles: list, labels: list[str]) -> None:
    """The legend right of the axes, each label wrapped at LEGEND_WIDTH."""
    ax.legend(handles, [wrap_title(lab, LEGEND_WIDTH) for lab in labels], fontsize=7, loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)


def _series_key(m: str, lab: str) -> tuple:
    """Legend and style order: the paper's method order, then the label with numbers by value."""
    return (_RANK.get(m, len(_RANK)), m, natural_key(lab))


def series_of(ours: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame, str]]:
    """(method, setting, cells, legend label) of each line: one per setting; a method whose sparsity is an
    outcome (Hoyer-Square's lambda series) is one series of points over its settings (setting ``*``)."""
    outcome = ours["sparsity_is_outcome"].astype(bool)
    keyed = ours.assign(_s=ours["setting"].where(~outcome, "*"))
    groups = []
    for (m, s), g in keyed.groupby(["method", "_s"], sort=False):
        groups.append((m, s, ours.loc[g.index], m if s == "*" else str(g["label"].iloc[0])))
    return sorted(groups, key=lambda t: _series_key(t[0], t[3]))


def _point_notes(g: pd.DataFrame) -> list[str]:
    """Each outcome point's knobs: the parts of its label that the other points of its series lack."""
    parts = [label_parts(str(lab).partition(" (")[2].rstrip(")")) for lab in g["label"]]
    common = set.intersection(*map(set, parts)) if len(parts) > 1 else set()
    return [", ".join(x for x in p if x and x not in common) for p in parts]


def draw_pair(cells: pd.DataFrame, title: str, x_axis: str = "nominal") -> tuple[plt.Figure, list[dict]]:
    """The figure of :func:`plot_pair` (not yet written) and its points: the cells of one protocol (with
    tables.short_labels' ``label``). The y range follows the points that did not collapse; a collapsed point
    (figure_style.COLLAPSE_GAP below the best at its sparsity) sits at the bottom edge with its value. On the
    effective axis, cells without an effective sparsity and the published values (nominal) are not drawn,
    and the axis label says so. Controls are not drawn: the report's controls table compares them."""
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=130)
    others = sorted(m for m in cells["method"].unique() if m not in COLORS)
    ours = cells[(cells["n_seeds"].fillna(0) > 0) & (cells["method"] != "control")]  # controls: their own table
    xlabel = X_AXES[x_axis][2]
    if x_axis == "effective":
        has = ours["effective_mean"].notna() | (ours["method"] == "dense") | (ours["target_sparsity"] == 0)
        xlabel += (f"\n{int((~has).sum())} cells without an effective sparsity not drawn" if (~has).any() else "")
        ours = ours[has]
    points: list[dict] = []
    notes: list = []  # the outcome points' knob labels, kept clear of each other and the frame
    groups = series_of(ours)
    styles = series_styles([(m, s) for m, s, _, _ in groups], lambda m: color_of(m, others))
    series = [_prepare(m, s, g, lab, x_axis) for m, s, g, lab in groups]
    pub = _published_points(cells) if x_axis == "nominal" else []
    best = _best_at([p for p in series if p["kind"] != "dense"])
    for p in series:
        p["low"] = np.array(collapsed(p["y"], [best(x) for x in p["x"]]) if p["kind"] != "dense" else [False])
    for p in pub:
        p["low"] = np.array(collapsed(p["y"], [best(x) for x in p["x"]]) if p["kind"] != "dense" else [False])
    y_lo, y_hi = _y_range(series, pub)
    for p in series:
        m, s, lab, g = p["method"], p["setting"], p["label"], p["cells"]
        st = styles[(m, s)]
        color = st["color"]
        if p["kind"] == "dense":
            mean, std = p["y"][0], p["err"][0]
            ax.axhline(mean, ls=st["ls"] if st["ls"] != "-" else "--", color=color, lw=1.2,
                       label=f"{lab}: {mean:.2f}")
            ax.axhspan(mean - std, mean + std, color=color, alpha=0.08, lw=0)
            points.append(_pt(m, s, lab, "dense", 0.0, mean, std, g["n_seeds"].iloc[0]))
            continue
        outcome = p["kind"] == "outcome"
        x, y, err, n, low = p["x"], p["y"], p["err"], p["n"], p["low"]
        keep = ~low
        marker, ms = ("*", 9) if outcome else (st["marker"], 6)
        ax.plot(x[keep], y[keep], color=color, lw=0.8 if outcome else 1.6, ls=":" if outcome else st["ls"],
                marker=marker, ms=ms, label=lab + (" ▼" if low.any() else ""), mec=color)
        many = (n > 1) & keep
        if many.any():  # error bars (std over seeds) only where there are seeds to take a std of; a single
            # seed is its marker alone, and the legend's [n=1] says so
            ax.errorbar(x[many], y[many], yerr=err[many], color=color, capsize=3, ls="none", lw=1.0)
        mark_off_axis(ax, x[low], y[low], color)
        if outcome:  # name each point by its knobs (e.g. method.lam=1e-05)
            notes += [ax.annotate(note, (xi, yi), fontsize=6, color=color, xytext=(4, -9),
                                  textcoords="offset points")
                      for xi, yi, note, lo in zip(x, y, _point_notes(g), low) if not lo]
        points += [_pt(m, s, lab, p["kind"], xi, r.final_mean, r.final_std, r.n_seeds)
                   for xi, r in zip(x, g.itertuples())]
    _plot_published(ax, pub, others, points)
    ours_x = [x for p in series if p["kind"] != "dense" for x in p["x"]]
    xs = ours_x + [x for p in pub for x in p["x"]]  # labelled ticks go to our points; published ones only widen
    if any(p["low"].any() for p in series + pub):
        ax.plot([], [], ls="none", marker="v", color="gray",
                label=f"collapsed: > {COLLAPSE_GAP:g} points below the best at its sparsity (value written)")
    ax.set_ylim(y_lo, y_hi)
    _axes(ax, xs, ours_x, title, xlabel)
    if notes:
        fig.canvas.draw()
        keep_labels_clear(ax, notes)
    return fig, points


def _prepare(m: str, s: str, g: pd.DataFrame, lab: str, x_axis: str = "nominal") -> dict:
    """One series' points: kind (dense, target or outcome), x (X_AXES[x_axis]'s sparsity), y, error (std) and
    seed counts, sorted by achieved sparsity, and its legend label with the seed counts."""
    target, outcome = X_AXES[x_axis][:2]
    g = g.sort_values(outcome if x_axis == "effective" else "achieved_mean")
    n = g["n_seeds"].astype(int)
    lab += f" [n={n.iloc[0]}]" if n.nunique() == 1 else f" [n={n.min()}-{n.max()}]"
    if m == "dense" or g["target_sparsity"].max() == 0 and not g["sparsity_is_outcome"].any():
        kind = "dense"
        g = g.iloc[:1]
    else:
        kind = "outcome" if bool(g["sparsity_is_outcome"].any()) else "target"
    x = (g[outcome] if kind == "outcome" else g[target]).to_numpy(dtype=float)
    return {"method": m, "setting": s, "label": lab, "cells": g, "kind": kind, "x": x,
            "y": g["final_mean"].to_numpy(dtype=float), "err": g["final_std"].fillna(0).to_numpy(dtype=float),
            "n": n.to_numpy()[: len(g)]}


def _best_at(series: list[dict]):
    """``best(x)``: the best accuracy among our points at sparsity ``x``, or at the drawn sparsity nearest to it
    (logit distance) where no point of ours is there (an outcome point, a published one); +inf if none."""
    by_x: dict[float, float] = {}
    for p in series:
        if p["kind"] == "target":
            for x, y in zip(p["x"], p["y"]):
                by_x[round(x, 6)] = max(by_x.get(round(x, 6), -math.inf), y)
    if not by_x:
        top = max((y for p in series for y in p["y"]), default=math.inf)
        return lambda x: top

    def best(x: float) -> float:
        if round(x, 6) in by_x:
            return by_x[round(x, 6)]
        near = min(by_x, key=lambda k: abs(_logit(k) - _logit(x)))
        return by_x[near]
    return best


def _logit(x: float) -> float:
    x = min(max(x, 1e-9), 1 - 1e-9)
    return math.log(x / (1 - x))


def _y_range(series: list[dict], pub: list[dict]) -> tuple[float, float]:
    """The accuracy range of the points that did not collapse (with their error bars and the dense band),
    padded, at least MIN_ACC_SPAN wide; a band below it for the collapsed ones' markers."""
    lows, highs = [], []
    for p in series + pub:
        keep = ~p["low"]
        lows += list((p["y"] - p["err"])[keep])
        highs += list((p["y"] + p["err"])[keep])
    if not lows:
        return 0.0, 100.0
    lo, hi = min(lows), max(highs)
    pad = 0.06 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    if hi - lo < MIN_ACC_SPAN:  # one point or a flat line: no zoom into noise
        mid = (lo + hi) / 2
        lo, hi = mid - MIN_ACC_SPAN / 2, mid + MIN_ACC_SPAN / 2
    if any(p["low"].any() for p in series + pub):  # room at the bottom edge for the collapsed markers
        lo -= 0.1 * (hi - lo)
    return lo, hi


def _pt(m: str, s: str, lab: str, kind: str, x: float, mean: float, std: float, n: float) -> dict:
    return dict(zip(POINTS_CSV, (m, s, lab, kind, x, mean, std, n)))


def _published_points(cells: pd.DataFrame) -> list[dict]:
    """The published values of ``cells``, one entry per method (dense: a line), as _prepare's series."""
    pub = cells.dropna(subset=["paper_acc"]).drop_duplicates(subset=["method", "paper_sparsity", "paper_acc"])
    out = []
    for m, g in pub.groupby("method", sort=False):
        g = g.sort_values("paper_sparsity")
        dense = m == "dense"
        out.append({"method": m, "cells": g, "kind": "dense" if dense else "published",
                    "star": bool(g["sparsity_is_outcome"].astype(bool).any()),
                    "x": np.array([] if dense else g["paper_sparsity"], dtype=float),
                    "y": g["paper_acc"].to_numpy(dtype=float)[: 1 if dense else None],
                    "err": g["paper_std"].fillna(0).to_numpy(dtype=float)[: 1 if dense else None]})
    return out


def _plot_published(ax: plt.Axes, pub: list[dict], others: list[str], points: list[dict]) -> None:
    """Faint hollow markers (and a faint dashed line for dense) at the published values; a collapsed one
    hollow at the bottom edge with its value."""
    for p in pub:
        m, g, color = p["method"], p["cells"], color_of(p["method"], others)
        if p["kind"] == "dense":
            ax.axhline(p["y"][0], ls="--", color=color, alpha=0.3, lw=1)
        else:
            keep, low = ~p["low"], p["low"]
            ax.errorbar(p["x"][keep], p["y"][keep], yerr=p["err"][keep], color=color, alpha=0.35, ls="none",
                        marker="*" if p["star"] else "o", mfc="none", ms=8 if p["star"] else 6, capsize=2)
            mark_off_axis(ax, p["x"][low], p["y"][low], color, hollow=True)
        points += [_pt(m, r.setting, "published", "published", r.paper_sparsity, r.paper_acc, r.paper_std, 0)
                   for r in g.itertuples()]
    if pub:
        ax.plot([], [], ls="none", marker="o", mfc="none", color="gray", alpha=0.5, label="published (faint)")


def _axes(ax: plt.Axes, xs: list[float], ours: list[float], title: str, xlabel: str = X_AXES["nominal"][2]) -> None:
    """Logit x axis from the smallest to the largest sparsity drawn (``xs``), with labelled ticks at ``ours``
    (our points) and at the paper's levels inside that range where the labels fit (the rest: unlabelled
    minor ticks); labels, grid, the legend right of the axes, and the title, wrapped until it fits."""
    ax.set_xscale("logit")
    drawn = sorted({round(x, 6) for x in ours if 0 < x < 1})
    inside = [x for x in xs if 0 < x < 1] or list(SPARSITY_HINTS)  # only dense: the paper's levels
    logits = [_logit(x) for x in inside]
    span = max(max(logits) - min(logits), 1.0)  # one sparsity: a span of one logit unit around it
    mid = (max(logits) + min(logits)) / 2
    lo, hi = min(min(logits), mid - span / 2), max(max(logits), mid + span / 2)
    pad = 0.06 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    ax.set_xlim(*(1 / (1 + math.exp(-v)) for v in (lo, hi)))
    ticks = sorted({t for t in SPARSITY_HINTS if lo <= _logit(t) <= hi} | set(drawn))
    # a labelled tick at every sparsity drawn (and the paper's levels) where the label fits
    # (with many sparsities drawn, an IMP chain's levels, every label competes for its place)
    first = [_logit(t) for t in drawn] if len(drawn) <= 8 else []
    fits = thin_ticks([_logit(t) for t in ticks], hi - lo, 0.07 if first or not drawn else 0.11, keep_first=first)
    major = [t for t in ticks if any(abs(_logit(t) - f) < 1e-9 for f in fits)]
    ax.set_xticks(major, [f"{100 * t:.4g}" for t in major])
    ax.set_xticks([t for t in ticks if t not in major], minor=True)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="major")
    handles, labels = ax.get_legend_handles_labels()  # drawn in legend order already; notes go last
    order = sorted(range(len(labels)), key=lambda i: (labels[i] == "published (faint)", labels[i].startswith("collapsed:"), i))
    legend_right(ax, [handles[i] for i in order], [labels[i] for i in order])
    fit_title(ax, title, wrap_title)
