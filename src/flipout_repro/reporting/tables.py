"""Every summary.json under <results_dir>/runs -> one table per model and data set, beside the paper.

A *cell* is the runs of one setting (every hashed config value but the seed) at one target sparsity: its
seeds are aggregated into mean and sample standard deviation (ddof=1; "—" for a single seed). Runs
whose summary says ``"status": "failed"``, and completed runs whose final or best accuracy is not a
finite number (status ``invalid``), are listed in runs.csv but left out of the cells. The
published values come from reference.py; methods whose sparsity is an outcome (``sparsity_is_outcome``)
are shown at their achieved sparsity.
"""
from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from flipout_repro.config.launch import register_resolvers
from flipout_repro.config.paths import config_dir
from flipout_repro.config.identity import NOT_IDENTITY, stored_identity
from flipout_repro.rundir import RunDir, read_summary

log = logging.getLogger("flipout_repro")

#: Row order of methods in tables and legends (others follow alphabetically).
METHOD_ORDER = ("dense", "flipout", "global_magnitude", "snip", "random", "flipout_no_noise",
                "noisy_global_magnitude", "hoyer_square")
#: A cell: one setting at one target sparsity and one precision (bf16 and fp32 runs never average).
CELL_KEYS = ["model", "dataset", "method", "variant", "setting", "target_sparsity", "precision"]
CELL_STATS = ["n_seeds", "seeds", "sparsity_is_outcome", "epochs", "hash", "achieved_mean", "achieved_std",
              "final_mean", "final_std", "best_mean", "best_std", "int8_mean", "int8_std", "int8_settings",
              "train_macs_fraction", "speedup_b1", "speedup_b64", "knobs", "flat", "setting_label", "finals"]


def load_runs(runs_root: Path) -> pd.DataFrame:
    """One row per summary.json under ``runs_root`` (unreadable ones are skipped with a warning)."""
    rows = []
    for path in sorted(Path(runs_root).glob("**/summary.json")):
        try:
            row = _run_row(read_summary(RunDir(path.parent)), path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # DamagedRun is a ValueError
            log.warning("skipped %s: %s", path, exc)
            continue
        bad = [f"{k} is {row[k]}" for k in ("final_test_acc", "best_test_acc")
               if isinstance(row[k], float) and not math.isfinite(row[k])]
        if bad and row["status"] == "completed":
            # a seed without a finite accuracy is neither averaged nor counted (it is in runs.csv)
            log.warning("%s: %s; left out of the tables", path, ", ".join(bad))
            row["status"] = "invalid"
        rows.append(row)
    cols = ["model", "dataset", "method", "variant", "setting", "target_sparsity", "precision", "seed", "status",
            "achieved_sparsity", "sparsity_is_outcome", "final_test_acc", "best_test_acc", "int8_test_acc",
            "int8_settings", "train_macs_fraction", "speedup_b1", "speedup_b64", "wall_time_s", "device", "epochs", "hash", "knobs",
            "flat", "run_dir"]
    return pd.DataFrame(rows, columns=cols)


def _run_row(s: dict[str, Any], path: Path) -> dict[str, Any]:
    cfg = s.get("config") or {}
    if cfg.get("precision") == "auto" and s.get("precision") == "bf16":
        # a GPU run of a version that hashed precision=auto though it trained in bf16: today's bf16 setting
        cfg = {**cfg, "precision": "bf16"}
    knobs = {k: v for k, v in (cfg.get("method") or {}).items() if k not in ("_target_", "name")}
    quant = s.get("quantization") or {}
    return {
        "model": s["model"], "dataset": s["dataset"], "method": s["method"],
        "variant": _variant(s["method"], knobs, cfg), "setting": _setting(cfg, s),
        "target_sparsity": float(s["target_sparsity"]), "precision": s.get("precision") or "",
        "seed": s["seed"], "status": s.get("status", "completed"),
        "achieved_sparsity": s.get("achieved_sparsity"), "sparsity_is_outcome": bool(s.get("sparsity_is_outcome")),
        "final_test_acc": s.get("final_test_acc"), "best_test_acc": s.get("best_test_acc"),
        "int8_test_acc": quant.get("test_acc") if isinstance(quant, dict) else None,
        "int8_settings": int8_settings(quant) if isinstance(quant, dict) and "test_acc" in quant else "",
        "train_macs_fraction": s.get("train_macs_fraction"),  # None for runs from before it was counted
        **{f"speedup_b{b}": (s.get("inference") or {}).get(f"speedup_b{b}") for b in (1, 64)},  # flipout-bench
        "wall_time_s": s.get("wall_time_s"), "device": str(s.get("device") or "").split(":")[0],
        "epochs": s.get("epochs", cfg.get("epochs")), "hash": s.get("hash"), "knobs": knobs,
        "flat": _flatten({k: v for k, v in cfg.items() if k not in ("sparsity", "seed", "method")}),
        "run_dir": str(path.parent),
    }


def _variant(method: str, knobs: dict[str, Any], cfg: dict[str, Any] | None = None) -> str:
    """The method's knobs that differ from conf/method/<method>.yaml, e.g. ``lam=1e-07`` ("" if none).

    A default that refers to other keys (STR's ``${optim.weight_decay}``, FORCE's per-data-set
    ``batches``) is resolved against the run's own config ``cfg`` first; without one it is left out.
    """
    raw = _method_defaults(method)
    if raw is None:
        return ", ".join(f"{k}={v}" for k, v in sorted(knobs.items()))
    defaults = _resolved_defaults(raw, cfg or {})
    unknown = object()
    diff = {k: v for k, v in knobs.items()
            if (d := defaults.get(k, unknown if k in raw else None)) is not unknown and d != v}
    return ", ".join(f"{k}={v}" for k, v in sorted(diff.items()))


def _resolved_defaults(raw: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its interpolations resolved in the context of ``cfg``; unresolvable ones dropped."""
    register_resolvers()  # ${paper_batches:...} in the method defaults
    out = {}
    context = {k: v for k, v in cfg.items() if k != "method"}
    for k, v in raw.items():
        if not (isinstance(v, str) and "${" in v):
            out[k] = v
            continue
        try:
            out[k] = OmegaConf.select(OmegaConf.create({**context, "method": {k: v}}), f"method.{k}",
                                      throw_on_missing=True)
        except Exception:  # the run's config lacks what the default refers to
            pass
    return out


@lru_cache(maxsize=None)
def _method_defaults(method: str) -> dict[str, Any] | None:
    """conf/method/<method>.yaml's knobs as written (interpolations unresolved), None if no such file."""
    path = Path(config_dir()) / "method" / f"{method}.yaml"
    if not path.exists():
        return None
    node = OmegaConf.to_container(OmegaConf.load(path))
    return {k: v for k, v in node.items() if k not in ("defaults", "_target_", "name")}


def _setting(cfg: dict[str, Any], summary: dict[str, Any]) -> str:
    """The run's identity without sparsity and seed: runs of one setting at several sparsities share it."""
    if not cfg:
        return ""
    return stored_identity(cfg, summary).setting_hash


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def setting_labels(cells: pd.DataFrame) -> pd.Series:
    """Where one method and variant has several settings: the config values that tell them apart
    (e.g. ``epochs=40``), else ""."""
    labels = pd.Series("", index=cells.index, dtype=object)
    for _, g in cells.groupby(["model", "dataset", "method", "variant"], sort=False):
        firsts = g.drop_duplicates("setting")
        if len(firsts) < 2:
            continue
        flats = {r.setting: r.flat or {} for r in firsts.itertuples()}
        keys = sorted({k for f in flats.values() for k in f})
        differ = [k for k in keys if len({f.get(k) for f in flats.values()}) > 1
                  and k not in NOT_IDENTITY and k.split(".")[0] not in NOT_IDENTITY]
        shown = _distinguishing(differ, flats)
        for i, r in g.iterrows():
            parts = [_label_part(k, flats[r["setting"]].get(k)) for k in shown
                     if flats[r["setting"]].get(k) not in (None, "None")]  # an unset knob says nothing
            labels[i] = ", ".join(parts) or r["setting"]
    return labels


def _distinguishing(keys: list[str], flats: dict[str, dict[str, str]]) -> list[str]:
    """The fewest of ``keys`` (in order, greedily) whose values tell every setting apart."""
    def distinct(ks: list[str]) -> int:
        return len({tuple(f.get(x) for x in ks) for f in flats.values()})

    shown: list[str] = []
    for k in keys:
        if distinct(shown) == len(flats):
            break
        if distinct([*shown, k]) > distinct(shown):
            shown.append(k)
    return shown


def _label_part(key: str, value: str | None) -> str:
    """``schedule._target_=flipout_repro.sparsity.schedule.Cubic`` -> ``schedule=Cubic``."""
    if key.endswith("._target_") and value:
        return f"{key[:-len('._target_')]}={value.rsplit('.', 1)[-1]}"
    return f"{key}={value}"


def int8_settings(quant: dict[str, Any]) -> str:
    """The settings of the int8 result a summary shows (its newest): analysis/quantize.QuantSettings.key;
    for a result from before that key, observer, backend and the number of calibration batches."""
    if quant.get("settings"):
        return str(quant["settings"])
    if not quant.get("observer"):
        return ""
    return f"{quant['observer']}-{quant.get('backend', '?')}-calib_{quant.get('calibration_batches', '?')}b"


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Cells: mean and sample std over seeds of the completed runs, one row per setting and sparsity."""
    done = runs[runs["status"] == "completed"].copy()
    if done.empty:
        return pd.DataFrame(columns=CELL_KEYS + CELL_STATS)
    g = done.groupby(CELL_KEYS, dropna=False, sort=False)
    cells = g.agg(
        n_seeds=("seed", "nunique"), seeds=("seed", lambda x: ",".join(str(v) for v in sorted(x))),
        sparsity_is_outcome=("sparsity_is_outcome", "any"), epochs=("epochs", "first"), hash=("hash", "first"),
        achieved_mean=("achieved_sparsity", "mean"), achieved_std=("achieved_sparsity", "std"),
        final_mean=("final_test_acc", "mean"), final_std=("final_test_acc", "std"),
        best_mean=("best_test_acc", "mean"), best_std=("best_test_acc", "std"),
        int8_mean=("int8_test_acc", "mean"), int8_std=("int8_test_acc", "std"),
        int8_settings=("int8_settings", lambda x: "; ".join(sorted({v for v in x if isinstance(v, str) and v}))),
        train_macs_fraction=("train_macs_fraction", "mean"),
        speedup_b1=("speedup_b1", "mean"), speedup_b64=("speedup_b64", "mean"),
        knobs=("knobs", "first"), flat=("flat", "first"),
    ).reset_index()
    # seed -> final accuracy, for the intervals and the comparisons paired by seed (compare.py)
    cells["finals"] = [{int(r.seed): float(r.final_test_acc) for r in grp.itertuples() if not pd.isna(r.final_test_acc)}
                       for _, grp in g]
    cells["setting_label"] = setting_labels(cells)
    return cells


def sort_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Model, data set, method (paper order first), variant, sparsity."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    key = cells["method"].map(lambda m: (rank.get(m, len(rank)), m))
    outcome = cells["sparsity_is_outcome"].astype(bool)  # a lambda series is sorted by achieved sparsity
    cells = cells.assign(_k=key, _v=cells["variant"].where(~outcome, ""),
                         _s=cells["achieved_mean"].where(outcome, cells["target_sparsity"]))
    return cells.sort_values(["model", "dataset", "_k", "_v", "_s"]).drop(columns=["_k", "_v", "_s"]) \
        .reset_index(drop=True)
