"""The published numbers (results/reference/*.csv) and how a cell of ours is matched to one: on model,
data set, method and target sparsity, or, for reference rows that name a method knob (Hoyer-Square's
``lam``), on that knob.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from flipout_repro.reporting.tables import sort_cells

#: Reference files name the Hoyer-Square strength ``hoyer_lambda``; our method calls it ``lam``.
REFERENCE_KNOBS = {"hoyer_lambda": ("hoyer_square", "lam")}


def load_reference(folder: Path) -> pd.DataFrame:
    """Published rows of every CSV in ``folder``: model, dataset, method, sparsity, paper_acc, paper_std,
    knob and knob_value (for rows keyed by a method knob), source."""
    frames = []
    for path in sorted(Path(folder).glob("*.csv")):
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


def attach_reference(cells: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    """Add paper_acc, paper_std, paper_sparsity and diff (final_mean - paper_acc) to every cell, and a row
    with n_seeds=0 for each published cell that no run covers (so the tables show what is missing)."""
    cells = cells.copy()
    for col in ("paper_acc", "paper_std", "paper_sparsity"):
        cells[col] = math.nan
    used: set[int] = set()
    for i, c in cells.iterrows():
        j = _match(c, ref)
        if j is not None:
            used.add(j)
            cells.loc[i, ["paper_acc", "paper_std", "paper_sparsity"]] = (
                ref.at[j, "paper_acc"], ref.at[j, "paper_std"], ref.at[j, "sparsity"])
    cells["diff"] = cells["final_mean"] - cells["paper_acc"] if len(cells) else []
    seen = set(zip(cells["model"], cells["dataset"])) if len(cells) else set()
    extra = [{"model": r.model, "dataset": r.dataset, "method": r.method,
              "variant": f"{r.knob}={r.knob_value:g}" if r.knob else "", "setting": "", "n_seeds": 0,
              "target_sparsity": r.sparsity, "sparsity_is_outcome": bool(r.knob), "achieved_mean": r.sparsity
              if r.knob else math.nan, "paper_acc": r.paper_acc, "paper_std": r.paper_std,
              "paper_sparsity": r.sparsity}
             for j, r in ref.iterrows() if j not in used and (r.model, r.dataset) in seen]
    if extra:
        cells = pd.concat([cells, pd.DataFrame(extra)], ignore_index=True)
    return sort_cells(cells)


def _match(cell: pd.Series, ref: pd.DataFrame) -> int | None:
    same = ref[(ref["model"] == cell["model"]) & (ref["dataset"] == cell["dataset"])
               & (ref["method"] == cell["method"])]
    for j, r in same.iterrows():
        if r["knob"]:
            v = (cell.get("knobs") or {}).get(r["knob"])
            if isinstance(v, (int, float)) and math.isclose(float(v), r["knob_value"], rel_tol=1e-6):
                return j
        elif not cell["sparsity_is_outcome"] and math.isclose(r["sparsity"], cell["target_sparsity"],
                                                              rel_tol=0, abs_tol=1e-9):
            return j
    return None
