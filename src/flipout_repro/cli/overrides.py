"""What flipout-train checks on its command line before Hydra composes anything: ``--version``, and keys
that do not exist (``lr=0.1`` gets "did you mean optim.lr?", where Hydra would suggest ``+lr=0.1``).

Only the schema (schema.py) and the config tree's folder names are read here, no torch: ``--help`` and a
typo stay fast.
"""
from __future__ import annotations

import os
import sys
from importlib import metadata

from flipout_repro import __version__
from flipout_repro.config import paths
from flipout_repro.config import schema
from flipout_repro.cli.failures import BAD_INPUT, fail

#: groups whose keys are free-form (a constructor's signature is their schema: config.instantiate)
_FREE_FORM = ("model", "method", "schedule")


def version_line() -> str:
    """``flipout-repro <version> (torch <version>, torchvision <version>)``, without importing torch."""
    def installed(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"
    return f"flipout-repro {__version__} (torch {installed('torch')}, torchvision {installed('torchvision')})"


def unknown_key(args: list[str]) -> tuple[str, object] | None:
    """The first ``key=value`` of ``args`` whose key is neither a key of the schema, nor a config group,
    nor under a free-form group or ``hydra.``; None if there is none (or if Hydra cannot parse them:
    it then says why itself). ``+key=value`` is left to config.check_keys, after composition."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - Hydra reports its own parse errors
        return None
    known = set(schema.key_paths())
    root = paths.config_dir()
    groups = {d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and d != "hydra"}
    for o in parsed:
        key = o.key_or_group
        if o.is_add() or o.is_force_add() or o.is_delete() or o.package is not None or "/" in key \
                or key.split(".")[0] == "hydra":  # a nested group (hydra/launcher=local): Hydra checks it
            continue
        top = key.split(".")[0]
        if key in known or key in groups or (top in groups and top in _FREE_FORM):
            continue
        value = o.value() if not o.is_sweep_override() else o.input_line.split("=", 1)[1]
        return key, value
    return None


def check_command_line(prog: str, args: list[str]) -> None:
    """``--version`` prints :func:`version_line` and exits 0; an unknown key is one line and exit code 2."""
    if "--version" in args:
        print(version_line())
        sys.exit(0)
    if {"--help", "-h", "--hydra-help"} & set(args):
        return
    found = unknown_key(args)
    if found:
        from flipout_repro.config.validate import unknown_key_error  # torch: only on this error path

        fail(prog, str(unknown_key_error(*found)), BAD_INPUT)


def print_resolved_notes(args: list[str]) -> None:
    """After ``--cfg job`` (or ``all``) has printed the composed config: what it does not show, as YAML
    comments. ``optim.milestones`` are epochs of an ``optim.milestones_of``-epoch run; the line gives the
    epochs of this run (training/lr_schedule.milestone_epochs), e.g. [17, 29] for a 40-epoch run."""
    kind = next((a.split("=", 1)[1] for a in args if a.startswith("--cfg=")), None)
    for flag, value in zip(args, args[1:]):
        if flag in ("--cfg", "-c"):
            kind = value
    if kind not in ("job", "all") or {"-m", "--multirun", "-p", "--package"} & set(args):
        return
    from flipout_repro.config.validate import compose_config
    from flipout_repro.training.lr_schedule import milestone_epochs

    try:
        cfg = compose_config(*[a for a in args if "=" in a and not a.startswith("-")])
        o = cfg.optim
        if o.schedule == "step":
            print(f"# optim.milestones as epochs of this run (epochs={cfg.epochs}, lr x {o.gamma:g} at each):"
                  f" {milestone_epochs(o.milestones, o.milestones_of, cfg.epochs)}")
    except Exception:  # noqa: BLE001 - a note only: the config above is what counts
        return
