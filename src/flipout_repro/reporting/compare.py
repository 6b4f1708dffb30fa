"""Each cell's uncertainty and comparisons: the 95 % interval of its mean, its difference to the baseline
method's cell of the same protocol, layer budget, pattern and sparsity (paired by seed when both cells ran
the same seeds, else Welch), and its standing against the published value. Every number is the
final-epoch test accuracy. Cells of different protocols are never compared: a cell whose protocol has no
such baseline cell gets no difference, and ``base_note`` says why.
"""
from __future__ import annotations

import math

import pandas as pd

from flipout_repro.config.identity import Identity, key_words
from flipout_repro.rundir import format_sparsity
from flipout_repro.reporting.stats import compare, mean_interval, versus_published

DEFAULT_BASELINE = "global_magnitude"
#: Sparsities closer than this are one column of the paper's table (SNIP's 0.999 beside 0.9990234375).
SAME_SPARSITY = 5e-4
#: The axes that pick the baseline cell besides the sparsity: the method's own (method, schedule) do not.
SHARED_AXES = ("budget", "pattern")
COMPARISON_COLUMNS = ["final_ci_lo", "final_ci_hi", "baseline", "base_diff", "base_lo", "base_hi", "base_kind",
                      "verdict", "base_note", "paper_status", "paper_gap"]


def attach_comparisons(cells: pd.DataFrame, baseline: str = DEFAULT_BASELINE, among: str = "") -> pd.DataFrame:
    """Add the columns of COMPARISON_COLUMNS to ``cells`` (after reference.attach_reference).

    A cell is compared with the ``baseline`` method's cell of the same protocol, budget, pattern and
    sparsity (the one with the most seeds); the baseline's own cells say "baseline"; dense cells and
    methods whose sparsity is an outcome are not compared. A cell that could be compared but has no such
    baseline cell gets ``base_note``: why (no baseline runs in its protocol, none with its budget, none at
    its sparsity; ``among``, e.g. " kept by --where", says that the runs were filtered). ``paper_status``:
    reproduced, above, below, missing (from attach_reference) or not comparable (ditto).
    """
    cells = cells.copy()
    for col in COMPARISON_COLUMNS:
        if col != "paper_status" or col not in cells:
            cells[col] = math.nan
    cells[["baseline", "base_kind", "verdict", "base_note"]] = ""
    cells["paper_status"] = cells["paper_status"].fillna("")
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
        base, why = _baseline_cell(cells, c, baseline, among)
        if base is None:
            cells.loc[i, "base_note"] = why
            continue
        d = compare(finals, base["finals"])
        cells.loc[i, ["baseline", "base_diff", "base_lo", "base_hi", "base_kind", "verdict"]] = (
            baseline, d.diff, d.lo, d.hi, d.kind, d.verdict)
    return cells


def _baseline_cell(cells: pd.DataFrame, c: pd.Series, baseline: str, among: str = ""
                   ) -> tuple[pd.Series | None, str]:
    """The baseline cell ``c`` is compared with, or None and why there is none."""
    pool = cells[(cells["method"] == baseline) & (cells["protocol"] == c["protocol"])
                 & (cells["n_seeds"].fillna(0) > 0) & ~cells["sparsity_is_outcome"].astype(bool)]
    if pool.empty:
        return None, f"no {baseline} runs{among} with this protocol"
    same = pool[[shared_axes(b) == shared_axes(c["identity"]) for b in pool["identity"]]]
    if same.empty:
        fc, fbs = flat_shared(c["identity"]), [flat_shared(b) for b in pool["identity"]]
        keys = sorted({k for fb in fbs for k in {*fc, *fb} if fc.get(k) != fb.get(k)})
        mine = ", ".join(f"{key_words(k)}={fc.get(k)}" for k in keys)
        theirs = sorted({", ".join(f"{key_words(k)}={fb.get(k)}" for k in keys) for fb in fbs})
        return None, f"no {baseline} runs{among} with {mine} in this protocol (it has {'; '.join(theirs)})"
    at = same[(same["target_sparsity"] - c["target_sparsity"]).abs() < SAME_SPARSITY]
    if at.empty:
        levels = ", ".join(format_sparsity(s) for s in sorted(set(same["target_sparsity"])))
        return None, (f"no {baseline} run{among} at sparsity {format_sparsity(c['target_sparsity'])} with this"
                      f" protocol and layer budget (its sparsities: {levels})")
    return at.sort_values("n_seeds", ascending=False, kind="stable").iloc[0], ""


def shared_axes(ident: Identity) -> dict:
    """The axes a cell and its baseline share: layer budget and pattern."""
    return {k: ident.axes.get(k) for k in SHARED_AXES}


def flat_shared(ident: Identity) -> dict:
    """``{"budget.name": "erk", "pattern.name": "unstructured"}``: SHARED_AXES in ``--where``'s words."""
    return {f"{k}.{key}": v for k in SHARED_AXES for key, v in (ident.axes.get(k) or {}).items()}


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
    """'reproduced', '+1.23' / '−0.50' (our mean minus the published one, outside the band), 'missing',
    'not comparable: epochs, budget.name' (the keys in which the run is not the published one)."""
    status = c.get("paper_status")
    if status in ("above", "below"):
        return f"{c['paper_gap']:+.2f}"
    if status == "not comparable":
        return f"not comparable: {c.get('paper_note') or '?'}"
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
