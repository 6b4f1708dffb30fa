"""``flipout-controls``: the controls of finished pruned runs (methods/derived.py), each a run of its own.

    flipout-controls results/runs/lenet300_100-mnist5k/snip            # every finished run below it
    flipout-controls --sweep force_quickstart --results-dir results    # every run of a sweep
    flipout-controls RUN --kinds shuffle,reinit --dry-run              # what would run

Each control takes its parent's protocol (its config.yaml), seed and sparsity; ``method=control`` with
``method.kind=<kind>`` and ``parent.run=<the parent's folder>``, written beside the parent in the same
results folder. A finished control is skipped, an interrupted one resumes, as any run. ``invert`` is
run only for parents that pruned at initialisation (unless ``--kinds`` names it: then such a parent is
refused in one line).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flipout_repro.cli import failures
from flipout_repro.config.defaults import group_defaults
from flipout_repro.config.identity import stored_identity
from flipout_repro.errors import ConfigError
from flipout_repro.methods.derived import CONTROL_KINDS
from flipout_repro.reporting.select import sweep_members
from flipout_repro.rundir import RunDir, read_summary
from flipout_repro.run import run
from flipout_repro.training.derive import prunes_at_init

log = logging.getLogger("flipout_repro")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="flipout-controls", description=(
        "Train the controls of finished pruned runs: shuffle (the mask permuted within each layer), reinit "
        "(the mask, fresh weights), random_budget (a random mask with the per-layer counts, fresh weights), "
        "invert (for methods that prune at initialisation: each layer's lowest-scored weights). Each control "
        "is a run in the parent's results folder, with its protocol and seed; flipout-report compares each "
        "method with its controls."))
    p.add_argument("folders", nargs="*", help="run folders (.../seed_<n>), or folders below which finished runs"
                   " lie (e.g. results/runs/lenet300_100-mnist5k/snip)")
    p.add_argument("--sweep", help="the runs of this sweep preset (conf/sweep/<name>.yaml), in --results-dir")
    p.add_argument("--results-dir", default="results", help="where --sweep's runs are (default: results)")
    p.add_argument("--kinds", help=f"comma-separated, of {', '.join(CONTROL_KINDS)} (default: all that apply)")
    p.add_argument("--device", default="auto", help="where the controls train (default: auto)")
    p.add_argument("--dry-run", action="store_true", help="list the controls that would run, and stop")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    failures.guard("flipout-controls", lambda: _controls(args))


def _controls(args: argparse.Namespace) -> None:
    kinds = _kinds(args.kinds)
    parents = _parents(args)
    if not parents:
        raise ConfigError("folders", " ".join(args.folders) or args.sweep, "hold no finished pruned run",
                          "give run folders (results/runs/...) or --sweep NAME --results-dir DIR")
    jobs = [(folder, kind) for folder, summary in parents for kind in (kinds or _applicable(summary))]
    for folder, kind in jobs:
        print(f"{kind:<14} {folder}")
    if args.dry_run:
        return
    failed = []
    for i, (folder, kind) in enumerate(jobs, 1):
        log.info("control %d of %d: %s of %s", i, len(jobs), kind, folder)
        summary = run(control_config(folder, kind, args.device))
        if summary.get("status") != "completed":
            failed.append(f"{kind} of {folder}")
    log.info("%d control%s run, %d failed%s", len(jobs), "" if len(jobs) == 1 else "s", len(failed),
             "".join(f"\n  {f}" for f in failed))


def _kinds(text: str | None) -> list[str]:
    if not text:
        return []
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    for k in kinds:
        if k not in CONTROL_KINDS:
            raise ConfigError("--kinds", k, "is not a control", f"use any of {', '.join(CONTROL_KINDS)}")
    return kinds


def _parents(args: argparse.Namespace) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, summary) of every finished, completed, pruned run named, that is not a control itself."""
    folders: list[Path] = []
    for name in args.folders:
        path = Path(name)
        if not path.is_dir():
            raise ConfigError("folders", name, "is not a folder", "give run folders (results/runs/...)")
        folders += [path] if (path / "summary.json").is_file() else sorted(p.parent for p in path.glob("**/summary.json"))
    if args.sweep:
        members = sweep_members(args.sweep, args.results_dir)
        folders += [p.parent for p in sorted((Path(args.results_dir) / "runs").glob("**/summary.json"))
                    if (p.parent.parent.name, _seed(p.parent.name)) in members]
    out = []
    for folder in dict.fromkeys(f.resolve() for f in folders):
        summary = read_summary(RunDir(folder))
        method = (summary.get("config") or {}).get("method", {}).get("name")
        if summary.get("status") == "completed" and summary.get("achieved_sparsity") and method != "control":
            out.append((folder, summary))
    return out


def _seed(name: str) -> int | None:
    return int(name[5:]) if name.startswith("seed_") and name[5:].isdigit() else None


def _applicable(summary: dict[str, Any]) -> list[str]:
    at_init = prunes_at_init(summary.get("config") or {})
    return [k for k in CONTROL_KINDS if k != "invert" or at_init]


def control_config(folder: Path, kind: str, device: str = "auto") -> DictConfig:
    """The config of the ``kind`` control of the finished run in ``folder``: its config with the control
    as method (conf/method/control.yaml), no prune schedule, the parent named, written beside it."""
    summary = read_summary(RunDir(folder))
    cfg = OmegaConf.create(summary["config"])
    OmegaConf.set_struct(cfg, False)
    stored_identity(summary["config"], summary)  # a config this version cannot read fails here, by name
    cfg.method = {**group_defaults("method", "control"), "kind": kind}
    cfg.schedule = group_defaults("schedule", "none")
    cfg.parent = {"run": str(folder), "hash": None}
    cfg.results_dir = str(folder.parents[5])  # <results_dir>/runs/<model>-<data>/<method>/sparsity_<s>/<hash>/seed_<n>
    cfg.device, cfg.progress = device, False
    return cfg
