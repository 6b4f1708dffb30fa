"""Every summary.json under <results_dir>/runs -> runs and cells, grouped by what a run is.

Each run is read through rundir's summary contract (``Summary``) and placed by its identity
(config/identity.py ``stored_identity``): its **protocol** (how it was trained: one table section per
protocol, and the only runs it is ever compared with), its **setting** (the axes but sparsity: a row) and
its sparsity (a column). A *cell* is the runs of one identity (every value but the seed): its seeds are
aggregated into mean and sample standard deviation (ddof=1; "—" for a single seed). A summary whose fields
break their typed definition (rundir.Summary: a NaN or 150 % accuracy, ``true`` for a number) is skipped
with a warning that names it. Runs whose summary says ``"status": "failed"``, and completed runs that did
not reach their target sparsity (status ``invalid``), are listed in runs.csv but left out of the cells. Methods whose sparsity is an
outcome (``sparsity_is_outcome``) are shown at their achieved sparsity.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from flipout_repro.config.identity import Identity, stored_identity
from flipout_repro.figure_style import natural_key
from flipout_repro.reporting.select import run_keys
from flipout_repro.rundir import RunDir, Summary, load_summary, path_name
from flipout_repro.sparsity.masking import reached

log = logging.getLogger("flipout_repro")

#: Row order of methods in tables and legends (others follow alphabetically).
METHOD_ORDER = ("dense", "flipout", "global_magnitude", "snip", "random", "flipout_no_noise",
                "noisy_global_magnitude", "hoyer_square")
#: A run derived from another (a control, an IMP level; run.py): its parent as its summary's ``parent``
#: names it (folder, identity hash, setting label and final accuracy, copied at the child's start), the
#: control kind and the IMP level; empty for other runs.
DERIVED_COLUMNS = ["parent_run_dir", "parent_hash", "parent_label", "parent_final_test_acc", "control", "imp_level"]
#: What places a run: its identity's hashes and labels (one protocol, one setting, one cell).
IDENTITY_COLUMNS = ["model", "dataset", "method", "protocol", "protocol_label", "setting", "setting_label", "hash",
                    "target_sparsity", "precision", "epochs"]
RUN_COLUMNS = [*IDENTITY_COLUMNS, "seed", "status", "achieved_sparsity", "effective_sparsity", "sparsity_is_outcome", "final_test_acc",
               "best_test_acc", "int8_test_acc", "int8_settings", "train_macs_fraction", "speedup_b1", "speedup_b64",
               "wall_time_s", "device", "run_dir", *DERIVED_COLUMNS, "identity", "keys"]
#: Columns of a run or cell that hold objects, not numbers or text (never written to a CSV).
OBJECT_COLUMNS = ["identity", "keys", "finals", "parent_finals"]
CELL_STATS = ["n_seeds", "seeds", "sparsity_is_outcome", "achieved_mean", "achieved_std", "effective_mean", "final_mean", "final_std",
              "best_mean", "best_std", "int8_mean", "int8_std", "int8_settings", "train_macs_fraction", "speedup_b1",
              "speedup_b64", "control", "parent_hash", "parent_label", "identity", "keys", "finals", "parent_finals"]


def load_runs(runs_root: Path) -> pd.DataFrame:
    """One row per summary.json under ``runs_root`` (unreadable ones are skipped with a warning)."""
    rows = []
    for path in sorted(Path(runs_root).glob("**/summary.json")):
        try:
            row = _run_row(load_summary(RunDir(path.parent)), path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # DamagedRun is a ValueError
            log.warning("skipped %s: %s", path, exc)
            continue
        short = not_reached(row)
        if short and row["status"] == "completed":
            # never placed at a sparsity it did not reach: listed in runs.csv, left out of the cells
            log.warning("%s: %s; left out of the tables", path, short)
            row["status"] = "invalid"
        rows.append(row)
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def not_reached(row: dict[str, Any]) -> str | None:
    """Why a run whose sparsity is its target (not an outcome) is not at it (sparsity.masking.reached);
    None when it is."""
    target, achieved = row["target_sparsity"], row["achieved_sparsity"]
    if row["sparsity_is_outcome"] or achieved is None or reached(target, achieved):
        return None
    return f"achieved sparsity {achieved:.6g} is short of its target {target:.6g}"


def _run_row(s: Summary, path: Path) -> dict[str, Any]:
    ident = stored_identity(s.config, {"precision": s.precision})
    quant = s.extra.get("quantization") or {}
    return {
        **identity_columns(ident), "seed": ident.seed, "status": s.status,
        "achieved_sparsity": s.achieved_sparsity, "sparsity_is_outcome": bool(s.sparsity_is_outcome),
        "final_test_acc": s.final_test_acc, "best_test_acc": s.best_test_acc,
        "int8_test_acc": quant.get("test_acc") if isinstance(quant, dict) else None,
        "int8_settings": int8_settings(quant) if isinstance(quant, dict) and "test_acc" in quant else "",
        "effective_sparsity": s.extra.get("effective_sparsity"),  # None for runs from before it was counted
        "train_macs_fraction": s.extra.get("train_macs_fraction"),  # None for runs from before it was counted
        **{f"speedup_b{b}": (s.extra.get("inference") or {}).get(f"speedup_b{b}") for b in (1, 64)},  # flipout-bench
        "wall_time_s": s.wall_time_s, "device": str(s.device or "").split(":")[0], "run_dir": str(path.parent),
        **derived_columns(s.extra), "keys": run_keys(ident, s.config),
    }


def derived_columns(extra: dict[str, Any]) -> dict[str, Any]:
    """DERIVED_COLUMNS of a summary's extra keys (rundir checks their types): None where it has none."""
    parent = extra.get("parent") or {}
    imp = extra.get("imp") or {}
    return {"parent_run_dir": parent.get("run_dir"), "parent_hash": parent.get("hash"),
            "parent_label": parent.get("setting_label"), "parent_final_test_acc": parent.get("final_test_acc"),
            "control": extra.get("control"), "imp_level": imp.get("level")}


def identity_columns(ident: Identity) -> dict[str, Any]:
    """IDENTITY_COLUMNS of an identity, and the identity itself."""
    p, a = ident.protocol, ident.axes
    return {"model": p["model"]["name"], "dataset": p["dataset"]["name"], "method": a["method"]["name"],
            "protocol": ident.protocol_hash, "protocol_label": ident.protocol_label(), "setting": ident.setting_hash,
            "setting_label": ident.axes_label(), "hash": ident.hash, "target_sparsity": float(a["sparsity"]),
            "precision": p["precision"], "epochs": p["epochs"], "identity": ident}


def int8_settings(quant: dict[str, Any]) -> str:
    """The settings of the int8 result a summary shows (its newest): analysis/quantize.QuantSettings.key;
    for a result from before that key, observer, backend and the number of calibration batches."""
    if quant.get("settings"):
        return str(quant["settings"])
    if not quant.get("observer"):
        return ""
    return f"{quant['observer']}-{quant.get('backend', '?')}-calib_{quant.get('calibration_batches', '?')}b"


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Cells: mean and sample std over seeds of the completed runs, one row per identity (seed aside)."""
    done = runs[runs["status"] == "completed"].copy()
    if done.empty:
        return pd.DataFrame(columns=IDENTITY_COLUMNS + CELL_STATS)
    g = done.groupby("hash", sort=False)
    cells = g.agg(
        **{c: (c, "first") for c in IDENTITY_COLUMNS if c != "hash"},
        n_seeds=("seed", "nunique"), seeds=("seed", lambda x: ",".join(str(v) for v in sorted(x))),
        sparsity_is_outcome=("sparsity_is_outcome", "any"),
        achieved_mean=("achieved_sparsity", "mean"), achieved_std=("achieved_sparsity", "std"),
        effective_mean=("effective_sparsity", "mean"),
        final_mean=("final_test_acc", "mean"), final_std=("final_test_acc", "std"),
        best_mean=("best_test_acc", "mean"), best_std=("best_test_acc", "std"),
        int8_mean=("int8_test_acc", "mean"), int8_std=("int8_test_acc", "std"),
        int8_settings=("int8_settings", lambda x: "; ".join(sorted({v for v in x if isinstance(v, str) and v}))),
        train_macs_fraction=("train_macs_fraction", "mean"),
        speedup_b1=("speedup_b1", "mean"), speedup_b64=("speedup_b64", "mean"),
        control=("control", "first"), parent_hash=("parent_hash", "first"), parent_label=("parent_label", "first"),
        identity=("identity", "first"), keys=("keys", "first"),
    ).reset_index()
    # seed -> final accuracy, for the intervals and the comparisons paired by seed (compare.py)
    cells["finals"] = [{int(r.seed): float(r.final_test_acc) for r in grp.itertuples() if not pd.isna(r.final_test_acc)}
                       for _, grp in g]
    # seed -> the parent's final accuracy as each child's summary copied it (a control's parent: one cell)
    cells["parent_finals"] = [{int(r.seed): float(r.parent_final_test_acc) for r in grp.itertuples()
                               if not pd.isna(r.parent_final_test_acc)} for _, grp in g]
    return cells[IDENTITY_COLUMNS + CELL_STATS]


def sort_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Model, data set, protocol (by its label, numbers by value), method (paper order first), setting,
    sparsity."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    outcome = cells["sparsity_is_outcome"].fillna(False).astype(bool)  # a lambda series: by achieved sparsity
    cells = cells.assign(_p=cells["protocol_label"].map(natural_key),
                         _k=cells["method"].map(lambda m: (rank.get(m, len(rank)), m)),
                         _v=cells["setting_label"].where(~outcome, cells["method"]).map(natural_key),
                         _s=cells["achieved_mean"].where(outcome, cells["target_sparsity"]))
    return cells.sort_values(["model", "dataset", "_p", "_k", "_v", "_s"]).drop(columns=["_p", "_k", "_v", "_s"]) \
        .reset_index(drop=True)


def label_parts(label: str) -> list[str]:
    """``flipout, budget=erk, optim.milestones=[1, 2]`` -> ``["flipout", "budget=erk", ...]``."""
    return re.split(r", (?=[\w.]+=)", label)


def short_labels(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with ``label`` (its setting in words, ``flipout (budget=erk)``, without what every setting
    of its protocol shares) and ``shared`` (that, in words), per model, data set and protocol."""
    cells = cells.copy()
    cells["label"], cells["shared"] = "", ""
    for _, part in cells.groupby(["model", "dataset", "protocol"], sort=False):
        parts = {i: label_parts(str(lab)) for i, lab in part["setting_label"].items()}
        shared = set.intersection(*(set(p[1:]) for p in parts.values()))  # one setting: all of it
        for i, p in parts.items():
            rest = [x for x in p[1:] if x not in shared]
            cells.at[i, "label"] = p[0] + (f" ({', '.join(rest)})" if rest else "")
            cells.at[i, "shared"] = ", ".join(x for x in p[1:] if x in shared)
    return cells


def figure_stem(model: str, dataset: str, protocol: str) -> str:
    """The file name (no suffix) of a protocol's figures: ``<model>-<dataset>-<protocol hash>``."""
    stem = f"{path_name(model, 'model.name')}-{path_name(dataset, 'dataset.name')}"
    return f"{stem}-{path_name(protocol, 'protocol')}" if protocol else stem
