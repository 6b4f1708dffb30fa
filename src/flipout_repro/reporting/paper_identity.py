"""What run reproduces a published row: the job of the sweep preset that reproduces its table.

results/reference/sweeps.csv says which presets (conf/sweep/) reproduce which CSV of results/reference. A
published row is the job of those presets with its model, data set, method and sparsity (a row keyed by a
method knob, Hoyer-Square's lambda: that knob's value), composed as the sweep composes it
(reporting/sweep_status.py) on a CPU; the job's identity (config/identity.py) is the row's. A cell of
ours is that published cell when its identity hash (protocol and axes, not the seed) is the row's.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from flipout_repro.config.identity import Identity
from flipout_repro.reporting.select import run_keys
from flipout_repro.reporting.sweep_status import check_sweep, sweep_settings

#: The file of results/reference that names the presets reproducing each published CSV.
SWEEPS_FILE = "sweeps.csv"
#: The columns attach_identities adds to the published rows.
ADDED_COLUMNS = ["identity", "hash", "protocol", "protocol_label", "setting", "setting_label", "keys", "why"]


def reproducing_sweeps(folder: Path) -> dict[str, list[str]]:
    """``{source: [sweep, ...]}`` from ``<folder>/sweeps.csv`` ({} without one); ValueError naming the file,
    the row and the fix for a preset that does not exist."""
    path = Path(folder) / SWEEPS_FILE
    if not path.is_file():
        return {}
    table = pd.read_csv(path, comment="#", dtype=str)
    if not {"source", "sweep"} <= set(table.columns):
        raise ValueError(f"{path} has the columns {list(table.columns)}: it needs source,sweep (one preset a row)")
    out: dict[str, list[str]] = {}
    for r in table.itertuples():
        check_sweep(r.sweep, key=f"{path}: source {r.source}: sweep")
        out.setdefault(r.source, []).append(r.sweep)
    return out


def attach_identities(ref: pd.DataFrame, folder: Path, pairs: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """``ref`` (reference.load_reference) with ADDED_COLUMNS: each row's identity, its hashes and labels,
    its keys for ``--where`` (reporting/select.py), and ``why`` it has none (``""`` when it has one). Rows of
    a (model, dataset) outside ``pairs`` (when given) are left without one, and their presets uncomposed."""
    ref, sweeps = ref.copy(), reproducing_sweeps(folder)
    found = [_identity_of(r, sweeps, folder) if pairs is None or (r.model, r.dataset) in pairs else (None, {}, "")
             for r in ref.itertuples()]
    ref["identity"] = [i for i, _, _ in found]
    ref["keys"] = [k for _, k, _ in found]
    ref["why"] = [w for _, _, w in found]
    ref["hash"] = [i.hash if i else "" for i in ref["identity"]]
    ref["protocol"] = [i.protocol_hash if i else "" for i in ref["identity"]]
    ref["protocol_label"] = [i.protocol_label() if i else "" for i in ref["identity"]]
    ref["setting"] = [i.setting_hash if i else "" for i in ref["identity"]]
    ref["setting_label"] = [i.axes_label() if i else "" for i in ref["identity"]]
    return ref


def _identity_of(row: Any, sweeps: dict[str, list[str]], folder: Path) -> tuple[Identity | None, dict, str]:
    """(identity, keys, "") of the job reproducing ``row``, else (None, its model, data set, method and
    sparsity as keys, why not)."""
    names = sweeps.get(row.source)
    plain = {"model.name": row.model, "dataset.name": row.dataset, "method.name": row.method, "sparsity": row.sparsity}
    if not names:
        return None, plain, f"no sweep preset reproduces {row.source} ({Path(folder) / SWEEPS_FILE})"
    for name in names:
        try:
            settings = sweep_settings(name)
        except (HydraException, OmegaConfBaseException, ImportError) as exc:
            return None, plain, f"{name} cannot be composed here ({type(exc).__name__})"
        for ident, cfg in settings:
            if _reproduces(row, cfg, ident):
                return ident, run_keys(ident, cfg), ""
    what = f"{row.knob}={row.knob_value:g}" if row.knob else f"sparsity={row.sparsity:g}"
    return None, plain, f"no job of {', '.join(names)} runs {row.method} at {what} on {row.model}/{row.dataset}"


def _reproduces(row: Any, cfg: dict[str, Any], ident: Identity) -> bool:
    """Whether a sweep job (its resolved config and identity) is the run behind published ``row``."""
    if (cfg["model"]["name"], cfg["dataset"]["name"], cfg["method"]["name"]) != (row.model, row.dataset, row.method):
        return False
    if row.knob:
        value = cfg["method"].get(row.knob)
        return isinstance(value, (int, float)) and math.isclose(float(value), row.knob_value, rel_tol=1e-6)
    return math.isclose(float(ident.axes["sparsity"]), row.sparsity, rel_tol=0, abs_tol=1e-9)
