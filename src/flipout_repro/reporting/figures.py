"""Accuracy-vs-sparsity figures drawn like the FlipOut paper's: one per model and data set.

Logit-scaled sparsity axis with ticks at the paper's five levels, one line with error bars (std over
seeds) per method and setting, the dense baseline as a dashed line with its std band, methods whose
sparsity is an outcome (Hoyer-Square) as points at their achieved sparsity, and the published values
as faint hollow markers of the same colour.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from flipout_repro.config import SPARSITY_HINTS  # noqa: E402
from flipout_repro.reporting.tables import METHOD_ORDER  # noqa: E402

COLORS = {"dense": "black", "flipout": "tab:red", "global_magnitude": "tab:blue", "snip": "tab:green",
          "random": "tab:gray", "flipout_no_noise": "tab:orange", "noisy_global_magnitude": "tab:purple",
          "hoyer_square": "tab:brown"}
_EXTRA = ["tab:pink", "tab:olive", "tab:cyan", "gold", "navy", "teal", "maroon", "lime"]
STYLES = ["-", "--", "-.", (0, (1, 1))]  # several settings of one method: one line style each
POINTS_CSV = ["method", "variant", "setting", "label", "kind", "sparsity", "acc_mean", "acc_std", "n_seeds"]


def color_of(method: str, others: list[str]) -> str:
    """A fixed colour per paper method; other methods take the next free colour."""
    if method in COLORS:
        return COLORS[method]
    return _EXTRA[others.index(method) % len(_EXTRA)] if method in others else _EXTRA[0]


def plot_pair(cells: pd.DataFrame, title: str, png: Path, csv: Path) -> None:
    """Draw one model/data set's cells (with their paper_* columns) to ``png``; the points to ``csv``."""
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=130)
    others = sorted(m for m in cells["method"].unique() if m not in COLORS)
    ours = cells[cells["n_seeds"].fillna(0) > 0]
    points: list[dict] = []
    xs: list[float] = []

    def label(m: str, v: str, setting_label: str) -> str:
        extra = "; ".join(x for x in (v, setting_label) if isinstance(x, str) and x)
        return m + (f" ({extra})" if extra else "")

    # a method whose sparsity is an outcome (Hoyer-Square's lambda series) is one series of points
    series = ours.assign(variant=ours["variant"].where(~ours["sparsity_is_outcome"].astype(bool), "*"),
                         setting=ours["setting"].where(~ours["sparsity_is_outcome"].astype(bool), ""))
    for (m, v, s), g in series.groupby(["method", "variant", "setting"], sort=False):
        g = ours.loc[g.index]
        color, lab = color_of(m, others), label(m, "" if v == "*" else v, g["setting_label"].iloc[0])
        style = STYLES[sorted(ours[ours["method"] == m]["setting"].unique()).index(s) % len(STYLES)] if s else "-"
        g = g.sort_values("achieved_mean")
        if m == "dense" or g["target_sparsity"].max() == 0 and not g["sparsity_is_outcome"].any():
            mean, std = g["final_mean"].iloc[0], g["final_std"].fillna(0).iloc[0]
            ax.axhline(mean, ls="--", color=color, lw=1.2, label=f"{lab}: {mean:.2f}")
            ax.axhspan(mean - std, mean + std, color=color, alpha=0.08, lw=0)
            points.append(_pt(m, v, s, lab, "dense", 0.0, mean, std, g["n_seeds"].iloc[0]))
            continue
        outcome = bool(g["sparsity_is_outcome"].any())
        x = g["achieved_mean"] if outcome else g["target_sparsity"]
        ax.errorbar(x, g["final_mean"], yerr=g["final_std"].fillna(0), color=color, capsize=3,
                    lw=0.8 if outcome else 1.6, ls=":" if outcome else style, marker="*" if outcome else "o",
                    ms=8 if outcome else 4, label=lab)
        if outcome:  # name each point by its knobs (e.g. lam=1e-05)
            for xi, r in zip(x, g.itertuples()):
                ax.annotate(r.variant, (xi, r.final_mean), fontsize=5, color=color, xytext=(3, 3),
                            textcoords="offset points")
        xs += list(x)
        points += [_pt(m, v, s, lab, "outcome" if outcome else "target", xi, r.final_mean, r.final_std, r.n_seeds)
                   for xi, r in zip(x, g.itertuples())]
    _plot_published(ax, cells, others, points, xs)
    _axes(ax, xs, title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    pd.DataFrame(points, columns=POINTS_CSV).to_csv(csv, index=False, float_format="%.6g")


def _pt(m: str, v: str, s: str, lab: str, kind: str, x: float, mean: float, std: float, n: float) -> dict:
    return dict(zip(POINTS_CSV, (m, v, s, lab, kind, x, mean, std, n)))


def _plot_published(ax: plt.Axes, cells: pd.DataFrame, others: list[str], points: list[dict], xs: list) -> None:
    """Faint hollow markers (and a faint dashed line for dense) at the published values."""
    pub = cells.dropna(subset=["paper_acc"]).drop_duplicates(
        subset=["method", "variant", "paper_sparsity", "paper_acc"])
    for m, g in pub.groupby("method", sort=False):
        color = color_of(m, others)
        if m == "dense":
            ax.axhline(g["paper_acc"].iloc[0], ls="--", color=color, alpha=0.3, lw=1)
        else:
            g = g.sort_values("paper_sparsity")
            star = bool(g["sparsity_is_outcome"].astype(bool).any())
            ax.errorbar(g["paper_sparsity"], g["paper_acc"], yerr=g["paper_std"].fillna(0), color=color,
                        alpha=0.35, ls="none", marker="*" if star else "o", mfc="none", ms=8 if star else 6,
                        capsize=2)
            xs += list(g["paper_sparsity"])
        points += [_pt(m, r.variant, "", "published", "published", r.paper_sparsity, r.paper_acc, r.paper_std, 0)
                   for r in g.itertuples()]
    if len(pub):
        ax.plot([], [], ls="none", marker="o", mfc="none", color="gray", alpha=0.5, label="published (faint)")


def _axes(ax: plt.Axes, xs: list[float], title: str) -> None:
    ax.set_xscale("logit")
    ticks = sorted(set(SPARSITY_HINTS) | {round(x, 6) for x in xs if 0 < x < 1})
    logits = [math.log(x / (1 - x)) for x in [min(SPARSITY_HINTS), max(SPARSITY_HINTS), *xs] if 0 < x < 1]
    pad = 0.06 * (max(logits) - min(logits))
    ax.set_xlim(*(1 / (1 + math.exp(-v)) for v in (min(logits) - pad, max(logits) + pad)))
    major = [t for t in ticks if t in SPARSITY_HINTS] or ticks
    ax.set_xticks(major, [f"{100 * t:.4g}" for t in major])
    ax.set_xticks([t for t in ticks if t not in major], minor=True)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("sparsity (% of prunable weights removed, logit scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="major")
    handles, labels = ax.get_legend_handles_labels()
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    order = sorted(range(len(labels)), key=lambda i: (labels[i] == "published (faint)",
                                                     rank.get(labels[i].split(" ")[0].rstrip(":"), 99), labels[i]))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7, loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)
