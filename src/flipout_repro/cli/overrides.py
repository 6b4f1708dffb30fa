"""What flipout-train checks on its command line before Hydra composes anything: ``--version``, keys
that do not exist (``lr=0.1`` gets "did you mean optim.lr?", where Hydra would suggest ``+lr=0.1``) and
options of a config group that do not exist (``method=flipuot`` gets "did you mean flipout?", where
Hydra would print its search path): one line, exit code 2, nothing written.

Only the schema (schema.py) and the config tree's file names are read here, no torch: ``--help`` and a
typo stay fast.
"""
from __future__ import annotations

import difflib
import os
import sys
from importlib import metadata

from flipout_repro import __version__
from flipout_repro.config import optimizers
from flipout_repro.config import paths
from flipout_repro.config import schema
from flipout_repro.cli.failures import BAD_INPUT, fail
from flipout_repro.errors import ConfigError

#: groups whose keys are free-form (a constructor's signature is their schema: config.instantiate)
_FREE_FORM = ("model", "method", "schedule")
#: what an option of a group is called in messages, where it is not the group's name
_NOUNS = {"optim": "optimiser", "dataset": "data set", "sweep": "sweep preset"}


def version_line() -> str:
    """``flipout-repro <version> (torch <version>, torchvision <version>)``, without importing torch."""
    def installed(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"
    return f"flipout-repro {__version__} (torch {installed('torch')}, torchvision {installed('torchvision')})"


def _parse(args: list[str]) -> list:
    """Hydra's parse of the ``key=value`` arguments; empty if it fails (Hydra then says why itself)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-") and "=" in a])
    except Exception:  # noqa: BLE001 - Hydra reports its own parse errors
        return []


def unreadable(args: list[str]) -> ConfigError | None:
    """The first ``key=value`` argument Hydra's override grammar cannot read (``optim.lr=[``), as a
    ConfigError with the parser's reason in one line; None if every one reads."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for a in args:
        if a.startswith("-") or "=" not in a:
            continue
        try:
            parser.parse_overrides([a])
        except Exception as exc:  # noqa: BLE001 - Hydra's OverrideParseException, its message made one line
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            key, _, value = a.partition("=")
            return ConfigError(key, value, f"cannot be read as an override ({reason})",
                               "quote it for the shell, e.g. 'optim.milestones=[150,250]' or key=\"a b\"")
    return None


def unknown_key(args: list[str]) -> tuple[str, object] | None:
    """The first ``key=value`` of ``args`` whose key is neither a key of the schema, nor a config group,
    nor under a free-form group or ``hydra.``; None if there is none (or if Hydra cannot parse them:
    it then says why itself). ``+key=value`` is left to config.check_keys, after composition."""
    known = set(schema.key_paths())
    groups = set(config_groups())
    for o in _parse(args):
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


def config_groups() -> dict[str, str]:
    """The config groups of conf/ (``hydra/`` aside): name -> folder."""
    root = paths.config_dir()
    return {d: os.path.join(root, d) for d in sorted(os.listdir(root))
            if d != "hydra" and os.path.isdir(os.path.join(root, d))}


def unknown_option(prog: str, args: list[str]) -> ConfigError | None:
    """The first ``group=option`` of ``args`` (``+sweep=option`` too, each value of ``method=a,b``) whose
    option has no conf/<group>/<option>.yaml, as a ConfigError with the closest options; None if there is
    none. ``glob(...)`` and ranges are left to Hydra."""
    groups = config_groups()
    for o in _parse(args):
        folder = groups.get(o.key_or_group)
        if folder is None or o.is_delete() or o.package is not None:
            continue
        if o.is_sweep_override():
            listed = o.value_type.name in ("CHOICE_SWEEP", "SIMPLE_CHOICE_SWEEP")
            values = list(o.sweep_string_iterator()) if listed else []
        else:
            values = ["null" if o.value() is None else str(o.value())]  # Hydra takes no null for a group
        for value in values:
            if not os.path.isfile(os.path.join(folder, f"{value}.yaml")):
                return _option_error(prog, o.input_line.split("=", 1)[0], o.key_or_group, value, folder)
    return None


def _option_error(prog: str, key: str, group: str, value: str, folder: str) -> ConfigError:
    """``method='flipuot' is not a method: did you mean flipout? (the methods: conf/method/*.yaml, ...)``"""
    noun = _NOUNS.get(group, group)
    options = sorted(f[:-len(".yaml")] for f in os.listdir(folder) if f.endswith(".yaml"))
    close = difflib.get_close_matches(value, options, n=3)
    if close:
        fix = f"did you mean {' or '.join(close)}? (the {noun}s: conf/{group}/*.yaml, {prog} --help lists them)"
    else:
        fix = f"use one of {', '.join(options)}" if len(options) <= 5 else \
            f"pick one of conf/{group}/*.yaml ({prog} --help lists them)"
    return ConfigError(key, value, f"is not {'an' if noun[0] in 'aeiou' else 'a'} {noun}", fix)


def foreign_optim_key(args: list[str]) -> ConfigError | None:
    """``optim.momentum=0.9`` with ``optim=adamw`` on the command line: a key of another optimiser than the
    one the command line picks (Hydra would refuse it with its own error); None if there is none."""
    parsed = _parse(args)
    picked = [o.value() for o in parsed if o.key_or_group == "optim" and not o.is_sweep_override()]
    if not picked or picked[-1] not in optimizers.OPTIMIZERS:
        return None
    own = optimizers.keys(picked[-1])
    for o in parsed:
        key = o.key_or_group.removeprefix("optim.")
        if o.key_or_group.startswith("optim.") and not o.is_delete() and key not in own:
            value = o.value() if not o.is_sweep_override() else o.input_line.split("=", 1)[1]
            return optimizers.key_error(picked[-1], key, value)
    return None


def check_command_line(prog: str, args: list[str]) -> None:
    """``--version`` prints :func:`version_line` and exits 0; an unknown key or group option is one line
    and exit code 2."""
    if "--version" in args:
        print(version_line())
        sys.exit(0)
    if {"--help", "-h", "--hydra-help"} & set(args):
        return
    bad = unreadable(args) or unknown_option(prog, args) or foreign_optim_key(args)
    if bad:
        fail(prog, str(bad), BAD_INPUT)
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
