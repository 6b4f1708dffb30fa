"""Runs derived from runs: the controls table and where the derived runs' parents are.

A control (method ``control``) trains from the start with a mask taken from a finished parent run (its
summary's ``parent``, ``control``: the kind). Its row sets the parent against the control: both cells'
mean ± std over their seeds, and the difference parent − control paired by seed over the seeds both have
(stats.compare: the t interval of the per-seed differences, df n − 1). The parent's accuracies are its
cell's when its runs are in the report (the cell whose hash is the control's ``parent.hash``), else those
the control's runs copied at their start (``parent.final_test_acc``): a deleted parent never breaks a row.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from flipout_repro.reporting.compare import fmt_diff
from flipout_repro.reporting.sections import fmt_sparsity
from flipout_repro.reporting.stats import compare, mean_std
from flipout_repro.reporting.tables import label_parts

CONTROL = "control"
IMP = "imp"
CONTROL_COLUMNS = ["model", "dataset", "protocol", "parent_label", "target_sparsity", "control", "parent_mean",
                   "parent_std", "parent_seeds", "parent_from", "control_mean", "control_std", "control_seeds",
                   "paired_seeds", "base_diff", "base_lo", "base_hi", "base_kind", "verdict", "hash", "parent_hash"]
#: What the parent − control difference measures, per control kind: (what the parent has, plural?, what the
#: control has instead).
CLAIMS = {"shuffle": ("the mask", False, "its layer counts"),
          "reinit": ("the parent's initial weights", True, "fresh ones under its mask"),
          "random_budget": ("the mask", False, "a random mask of its layer budget"),
          "invert": ("the mask", False, "its inverse")}
ABOUT = ("Each control trains from the start with a mask derived from a finished parent run (its kind: shuffle,"
         " the mask permuted within each layer; reinit, the mask from fresh initial weights; random_budget, a"
         " random mask of the parent's layer budget; invert, the pruned weights kept). Parent and control: final"
         " test accuracy, mean ± std over their seeds; parent − control: the mean of the per-seed differences"
         " over the seeds both ran, with its 95 % t interval (p: paired by seed), ✱ when it excludes zero. The"
         " parent's accuracies are its runs' here, else those its controls' summaries copied (parent: copied).")


def control_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per control cell with runs (CONTROL_COLUMNS), sorted by model, data set, parent and sparsity."""
    mine = cells[(cells["method"] == CONTROL) & (cells["n_seeds"].fillna(0) > 0)]
    rows = []
    for _, c in mine.iterrows():
        parents = cells[(cells["hash"] == c["parent_hash"]) & (cells["n_seeds"].fillna(0) > 0)]
        if len(parents):
            parent, source = dict(parents.iloc[0]["finals"]), "runs"
        else:
            parent, source = dict(c["parent_finals"]), "copied"
        control = dict(c["finals"])
        both = sorted(set(parent) & set(control))
        d = compare({s: parent[s] for s in both}, {s: control[s] for s in both}) if both else None
        pm, ps = mean_std(list(parent.values())) if parent else (float("nan"),) * 2
        rows.append({"model": c["model"], "dataset": c["dataset"], "protocol": c["protocol"],
                     "parent_label": _short(c["parent_label"], c.get("shared")),
                     "target_sparsity": c["target_sparsity"], "control": c["control"], "parent_mean": pm,
                     "parent_std": ps, "parent_seeds": _seeds(parent), "parent_from": source,
                     "control_mean": c["final_mean"], "control_std": c["final_std"], "control_seeds": _seeds(control),
                     "paired_seeds": _seeds(dict.fromkeys(both)), "base_diff": d.diff if d else float("nan"),
                     "base_lo": d.lo if d else float("nan"), "base_hi": d.hi if d else float("nan"),
                     "base_kind": d.kind if d else "", "verdict": d.verdict if d else "", "hash": c["hash"],
                     "parent_hash": c["parent_hash"]})
    out = pd.DataFrame(rows, columns=CONTROL_COLUMNS)
    return out.sort_values(["model", "dataset", "parent_label", "control", "target_sparsity"]).reset_index(drop=True)


def _short(label: object, shared: object) -> str:
    """The parent's setting label without what every setting of its protocol shares (tables.short_labels'
    form: ``snip (schedule=one_shot)``); '?' when the children did not record it."""
    if not isinstance(label, str):
        return "?"
    common = set(label_parts(shared)) if isinstance(shared, str) and shared else set()
    parts = label_parts(label)
    rest = [x for x in parts[1:] if x not in common]
    return parts[0] + (f" ({', '.join(rest)})" if rest else "")


def _seeds(values: dict) -> str:
    return ",".join(str(s) for s in sorted(values))


def claim(r: pd.Series) -> str:
    """``snip at 90.00 %, shuffle: the mask beats its layer counts by +2.00 [+0.76, +3.24] (3 seeds)``; "...
    loses to ..." below zero, "... within noise" when the interval holds zero."""
    head = f"{r['parent_label']} at {fmt_sparsity(r['target_sparsity'])}, {r['control']}"
    if pd.isna(r["base_diff"]):
        return f"{head}: no seed in common with its parent, no paired difference"
    who, plural, whom = CLAIMS.get(r["control"], ("the parent", False, f"its {r['control']} control"))
    n = len(r["paired_seeds"].split(","))
    if pd.isna(r["base_lo"]):
        return f"{head}: {fmt_diff(r)}"
    diff = f"{r['base_diff']:+.2f} [{r['base_lo']:+.2f}, {r['base_hi']:+.2f}] ({n} seeds)"
    if r["verdict"] == "better":
        return f"{head}: {who} {'beat' if plural else 'beats'} {whom} by {diff}"
    if r["verdict"] == "worse":
        return f"{head}: {who} {'lose' if plural else 'loses'} to {whom} by {diff}"
    return f"{head}: {who} against {whom}, within noise: {diff}"


def controls_markdown(rows: pd.DataFrame) -> str:
    """The controls section of one model and data set: what a control is, one line per control, the table."""
    if rows.empty:
        return ""
    lines = ["", "## Controls", "", ABOUT, ""] + [f"- {claim(r)}." for _, r in rows.iterrows()] + [""]
    lines += ["| parent | sparsity | control | parent (seeds) | control (seeds) | parent − control [95 % CI] |",
              "|---|---|---|---|---|---|"]
    for _, r in rows.iterrows():
        parent = _pm(r["parent_mean"], r["parent_std"]) + f" ({r['parent_seeds']})" + \
            (", copied" if r["parent_from"] == "copied" else "")
        lines.append(f"| {r['parent_label']} | {fmt_sparsity(r['target_sparsity'])} | {r['control']} | {parent}"
                     f" | {_pm(r['control_mean'], r['control_std'])} ({r['control_seeds']}) | {fmt_diff(r)} |")
    return "\n".join(lines) + "\n\n"


def _pm(mean: float, std: float) -> str:
    return "" if pd.isna(mean) else f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def parents_markdown(runs: pd.DataFrame, cells: pd.DataFrame, root: Path | None = None) -> str:
    """Where the parents of each control or IMP setting are: one line per setting (its label in ``cells``),
    the folder that holds them all (relative to ``root`` where it is inside it) and their hashes."""
    derived = runs[runs["parent_hash"].notna() & runs["method"].isin([CONTROL, IMP])]
    if derived.empty:
        return ""
    labels = dict(zip(cells["hash"], cells.get("label", cells["setting_label"])))
    lines = ["", "## Where the parents are", "", "Each setting of runs derived from runs (controls, IMP levels): the"
             " folder its parents' run folders are in, and their identity hashes (runs.csv: each run's"
             " parent_run_dir and parent_hash).", ""]
    for _, part in derived.groupby("setting", sort=False):
        label = labels.get(part["hash"].iloc[0], part["setting_label"].iloc[0])
        hashes = sorted(set(part["parent_hash"]))
        shown = ", ".join(hashes[:4]) + (f" and {len(hashes) - 4} more" if len(hashes) > 4 else "")
        runs = f"{len(part)} run{'' if len(part) == 1 else 's'}"
        lines.append(f"- {label}: {runs}, parents under `{_common(part['parent_run_dir'], root)}`"
                     f" ({len(hashes)} parent cell{'s' if len(hashes) > 1 else ''}: {shown})")
    return "\n".join(lines) + "\n\n"


def _common(folders: pd.Series, root: Path | None) -> str:
    """The deepest folder holding every one of ``folders`` (relative to ``root`` when inside it)."""
    known = [str(f) for f in folders if isinstance(f, str) and f]
    if not known:
        return "(not recorded)"
    common = Path(os.path.commonpath(known))
    if root is not None and Path(root).resolve() in common.resolve().parents:
        common = common.resolve().relative_to(Path(root).resolve())
    return f"{common}/"
