"""The published numbers (results/reference/*.csv) and which cell of ours is which published cell.

A published row has the identity of the sweep job that reproduces it (reporting/paper_identity.py); a cell
of ours *is* that published cell when its identity hash (protocol and axes, not the seed) is the row's. A
cell whose model, data set, method and sparsity (or, for rows keyed by a method knob, Hoyer-Square's
``lam``, that knob) are a published row's but whose identity is not is *not comparable*: it is shown with
the keys that differ (``epochs, budget.name``), never with a difference to the paper.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from flipout_repro.config.identity import differences
from flipout_repro.reporting.paper_identity import SWEEPS_FILE, attach_identities
from flipout_repro.reporting.tables import sort_cells

#: Reference files name the Hoyer-Square strength ``hoyer_lambda``; our method calls it ``lam``.
REFERENCE_KNOBS = {"hoyer_lambda": ("hoyer_square", "lam")}
#: The columns attach_reference adds to the cells.
PAPER_COLUMNS = ["paper_acc", "paper_std", "paper_sparsity", "paper_status", "paper_note", "paper_source"]


def load_reference(folder: Path) -> pd.DataFrame:
    """Published rows of every CSV in ``folder``: model, dataset, method, sparsity, paper_acc, paper_std,
    knob and knob_value (for rows keyed by a method knob), source."""
    frames = []
    for path in sorted(Path(folder).glob("*.csv")):
        if path.name == SWEEPS_FILE:
            continue
        df = pd.read_csv(path, comment="#")
        acc = next((c for c in ("acc_mean", "acc", "top1") if c in df.columns), None)
        if acc is None or not {"model", "dataset", "sparsity"} <= set(df.columns):
            continue
        out = pd.DataFrame({"model": df["model"], "dataset": df["dataset"],
                            "sparsity": df["sparsity"].astype(float), "paper_acc": df[acc].astype(float),
                            "paper_std": df["acc_std"].astype(float) if "acc_std" in df else math.nan,
                            "knob": None, "knob_value": math.nan, "source": path.stem})
        out["method"] = df["method"] if "method" in df else None
        for col, (method, knob) in REFERENCE_KNOBS.items():
            if col in df:
                out["method"], out["knob"], out["knob_value"] = method, knob, df[col].astype(float)
        frames.append(out)
    cols = ["model", "dataset", "method", "sparsity", "paper_acc", "paper_std", "knob", "knob_value", "source"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def published_rows(folder: Path, pairs: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """load_reference's rows with their identities (paper_identity.attach_identities; only the rows of
    ``pairs`` (model, dataset) when given)."""
    return attach_identities(load_reference(folder), folder, pairs)


def attach_reference(cells: pd.DataFrame, ref: pd.DataFrame, shown: pd.Series | None = None) -> pd.DataFrame:
    """Add PAPER_COLUMNS and ``diff`` (final_mean - paper_acc) to every cell, and a row with n_seeds=0 for
    each published cell (of a model and data set with runs here) that no run covers.

    ``ref``: load_reference's rows with paper_identity.attach_identities' columns. ``shown``: which of them
    may appear as such rows (``--where``/``--sweep``; all by default); every row is matched either way.
    """
    cells = cells.copy()
    for col in PAPER_COLUMNS:
        cells[col] = math.nan if col in ("paper_acc", "paper_std", "paper_sparsity") else ""
    by_hash = {h: j for j, h in ref["hash"].items() if h} if "hash" in ref else {}
    used: set[int] = set()
    for i, c in cells.iterrows():
        j = by_hash.get(c["hash"])
        if j is not None:
            used.add(j)
            r = ref.loc[j]
            cells.loc[i, ["paper_acc", "paper_std", "paper_sparsity", "paper_source"]] = (
                r["paper_acc"], r["paper_std"], r["sparsity"], r["source"])
        elif (j := _same_cell(c, ref)) is not None:
            cells.loc[i, ["paper_status", "paper_note", "paper_source"]] = (
                "not comparable", _why_not(c, ref.loc[j]), ref.at[j, "source"])
    cells["diff"] = cells["final_mean"] - cells["paper_acc"] if len(cells) else []
    seen = set(zip(cells["model"], cells["dataset"])) if len(cells) else set()
    extra = [_missing_row(r) for j, r in ref.iterrows()
             if j not in used and (r.model, r.dataset) in seen and (shown is None or bool(shown.get(j, False)))]
    if extra:
        cells = pd.concat([cells, pd.DataFrame(extra)], ignore_index=True)
    return sort_cells(cells)


def _same_cell(cell: pd.Series, ref: pd.DataFrame) -> int | None:
    """The published row of ``cell``'s model, data set, method and sparsity (or method knob), if any."""
    same = ref[(ref["model"] == cell["model"]) & (ref["dataset"] == cell["dataset"])
               & (ref["method"] == cell["method"])]
    for j, r in same.iterrows():
        if r["knob"]:
            v = (cell.get("keys") or {}).get(f"method.{r['knob']}")
            if isinstance(v, (int, float)) and math.isclose(float(v), r["knob_value"], rel_tol=1e-6):
                return j
        elif not cell["sparsity_is_outcome"] and math.isclose(r["sparsity"], cell["target_sparsity"],
                                                              rel_tol=0, abs_tol=1e-9):
            return j
    return None


def _why_not(cell: pd.Series, row: pd.Series) -> str:
    """The keys of protocol and axes in which ``cell`` is not the published ``row`` (or why the row has no
    identity)."""
    if row.get("identity") is None:
        return str(row.get("why") or "the published row has no identity")
    keys = differences(cell["identity"], row["identity"], "protocol") + differences(cell["identity"],
                                                                                    row["identity"], "axes")
    return ", ".join(keys)


def _missing_row(r: pd.Series) -> dict[str, Any]:
    """A cell row with no runs for published row ``r``, in its own protocol (or none, when it has none)."""
    ident = r.get("identity")
    outcome = bool(r.knob)
    knob = f", method.{r.knob}={r.knob_value:g}" if outcome else ""
    label = r.setting_label if ident is not None else r.method + knob
    return {"model": r.model, "dataset": r.dataset, "method": r.method, "protocol": r.get("protocol") or "",
            "protocol_label": r.protocol_label if ident is not None else f"protocol not known: {r.get('why')}",
            "setting": r.get("setting") or "", "setting_label": label, "hash": r.get("hash") or "",
            "target_sparsity": float(ident.axes["sparsity"]) if ident is not None else r.sparsity,
            "precision": ident.protocol["precision"] if ident is not None else "",
            "epochs": ident.protocol["epochs"] if ident is not None else math.nan, "identity": ident,
            "keys": r.get("keys") or {}, "n_seeds": 0, "sparsity_is_outcome": outcome,
            "achieved_mean": r.sparsity if outcome else math.nan, "paper_acc": r.paper_acc, "paper_std": r.paper_std,
            "paper_sparsity": r.sparsity, "paper_status": "missing", "paper_note": "", "paper_source": r.source}
