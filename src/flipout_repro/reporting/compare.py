"""Each cell's uncertainty and comparisons: the 95 % interval of its mean, its difference to the baseline
method at the same sparsity (paired by seed when both cells ran the same seeds, else Welch), and its
standing against the published value. Every number is the final-epoch test accuracy.
"""
from __future__ import annotations

import math

import pandas as pd

from flipout_repro.reporting.stats import compare, mean_interval, versus_published

DEFAULT_BASELINE = "global_magnitude"
#: Sparsities closer than this are one column of the paper's table (SNIP's 0.999 beside 0.9990234375).
SAME_SPARSITY = 5e-4
COMPARISON_COLUMNS = ["final_ci_lo", "final_ci_hi", "baseline", "base_diff", "base_lo", "base_hi", "base_kind",
                      "verdict", "paper_status", "paper_gap"]


def attach_comparisons(cells: pd.DataFrame, baseline: str = DEFAULT_BASELINE) -> pd.DataFrame:
    """Add the columns of COMPARISON_COLUMNS to ``cells`` (after reference.attach_reference).

    A cell is compared with the ``baseline`` method's cell of the same model, data set, precision and
    sparsity (the one whose shared settings, e.g. ``budget``, differ least, then the same epochs, then the
    most seeds); the baseline's own cells say
    "baseline"; dense cells and methods whose sparsity is an outcome are not compared.
    """
    cells = cells.copy()
    for col in COMPARISON_COLUMNS:
        cells[col] = math.nan
    cells[["baseline", "base_kind", "verdict", "paper_status"]] = ""
    for i, c in cells.iterrows():
        finals = c.get("finals") if isinstance(c.get("finals"), dict) else {}
        lo, hi = mean_interval(list(finals.values()))
        cells.loc[i, ["final_ci_lo", "final_ci_hi"]] = lo, hi
        if not pd.isna(c.get("paper_acc")):
            status, gap = versus_published(c.get("final_mean", math.nan) if finals else math.nan, lo, hi,
                                           c["paper_acc"], c.get("paper_std"))
            cells.loc[i, ["paper_status", "paper_gap"]] = status, gap
        if not finals or c["method"] == "dense" or bool(c["sparsity_is_outcome"]):
            continue
        if c["method"] == baseline:
            cells.loc[i, ["baseline", "verdict"]] = baseline, "baseline"
            continue
        base = _baseline_cell(cells, c, baseline)
        if base is None:
            continue
        d = compare(finals, base["finals"])
        cells.loc[i, ["baseline", "base_diff", "base_lo", "base_hi", "base_kind", "verdict"]] = (
            baseline, d.diff, d.lo, d.hi, d.kind, d.verdict)
    return cells


def _baseline_cell(cells: pd.DataFrame, c: pd.Series, baseline: str) -> pd.Series | None:
    same = cells[(cells["method"] == baseline) & (cells["model"] == c["model"]) & (cells["dataset"] == c["dataset"])
                 & (cells["precision"].fillna("") == (c.get("precision") or ""))
                 & ((cells["target_sparsity"] - c["target_sparsity"]).abs() < SAME_SPARSITY)
                 & (cells["n_seeds"].fillna(0) > 0) & ~cells["sparsity_is_outcome"].astype(bool)]
    if same.empty:
        return None
    rank = same.assign(_d=[_shared_differences(b, c.get("flat")) for b in same.get("flat", [None] * len(same))],
                       _e=(same["epochs"] != c.get("epochs")), _n=-same["n_seeds"]).sort_values(["_d", "_e", "_n"])
    return rank.iloc[0]


def _shared_differences(base: dict | None, cell: dict | None) -> int:
    """How many shared settings (everything but the method, its schedule and the seed: budget, pattern,
    epochs, model, optimiser, ...) differ between a baseline cell and the compared one; the baseline with
    the fewest is taken, so ``budget=erk`` is compared with the baseline's ``budget=erk`` cell."""
    if not isinstance(base, dict) or not isinstance(cell, dict):
        return 0
    keys = {k for k in (*base, *cell) if not k.startswith(("schedule.", "method."))}
    return sum(base.get(k) != cell.get(k) for k in keys)


def fmt_diff(c: pd.Series) -> str:
    """'+1.23 [+0.40, +2.06] ✱ better' (✱: the interval excludes zero; p: paired by seed), '' if none."""
    if pd.isna(c.get("base_diff")):
        return "baseline" if c.get("verdict") == "baseline" else ""
    text = f"{c['base_diff']:+.2f}"
    if pd.isna(c.get("base_lo")):
        return text + " (1 seed: no interval)"
    mark = " ✱" if c["verdict"] in ("better", "worse") else ""
    paired = " p" if c.get("base_kind") == "paired" else ""
    return f"{text} [{c['base_lo']:+.2f}, {c['base_hi']:+.2f}]{paired}{mark} {c['verdict']}"


def fmt_published(c: pd.Series) -> str:
    """'reproduced', '+1.23' / '−0.50' (our mean minus the published one, outside the band), 'missing'."""
    status = c.get("paper_status")
    if status in ("above", "below"):
        return f"{c['paper_gap']:+.2f}"
    return status if isinstance(status, str) else ""


PAPER_STATUSES = ("reproduced", "missing", "above", "below")


def published_counts(cells: pd.DataFrame) -> tuple[int, dict[str, int]]:
    """(number of cells with a published value, how many of them are in each of PAPER_STATUSES)."""
    status = cells["paper_status"][cells["paper_acc"].notna()] if "paper_status" in cells else pd.Series([])
    return len(status), {k: int((status == k).sum()) for k in PAPER_STATUSES}


def published_summary(cells: pd.DataFrame) -> str:
    """One line: how many published cells are reproduced, missing, above and below ('' if none)."""
    total, n = published_counts(cells)
    if not total:
        return ""
    line = (f"Published cells: {total}; reproduced {n['reproduced']}, missing {n['missing']}, "
            f"above {n['above']}, below {n['below']}")
    return line + (" (all missing: no runs of these cells here)." if n["missing"] == total else ".")
