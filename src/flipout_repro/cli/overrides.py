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
from pathlib import Path
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
    extra = [d for d in (_option(args, ("--config-dir", "-cd")),) if d]  # the user's own presets
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
            if not any(os.path.isfile(os.path.join(f, f"{value}.yaml"))
                       for f in (folder, *[os.path.join(d, o.key_or_group) for d in extra])):
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


def relabel_or_copy(args: list[str]) -> ConfigError | None:
    """A ConfigError for an override that would make a run lie about itself: ``<group>.name=`` (relabels
    the run in its folder and every table: ``method.name=flipout`` on a magnitude run), or a key that a
    group's options set to a copy of another key (``method.optim_weight_decay: ${optim.weight_decay}``):
    the two would disagree. None if there is none."""
    import re

    groups = config_groups()
    copy = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
    for o in _parse(args):
        if o.is_delete() or "." not in o.key_or_group:
            continue
        group, key = o.key_or_group.split(".", 1)
        if group not in groups:
            continue
        value = o.input_line.split("=", 1)[1] if "=" in o.input_line else None
        noun = _NOUNS.get(group, group)
        if key == "name":
            return ConfigError(o.key_or_group, value, "would relabel the run in its folder and every table",
                               f"pick the {noun} itself: {group}=NAME (flipout-train --help lists them)")
        for option in sorted(os.listdir(groups[group])):
            if not option.endswith(".yaml"):
                continue
            text = Path(groups[group], option).read_text()
            found = re.search(rf"^{re.escape(key)}:\s*(\S+)\s*$", text, re.M)
            source = copy.fullmatch(found.group(1)) if found else None
            if source:
                return ConfigError(o.key_or_group, value, f"is a copy of {source.group(1)} (conf/{group}/{option})",
                                   f"set {source.group(1)} instead")
    return None


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


#: What Hydra may instantiate for flipout-train: our own callback, Hydra's own launcher and sweeper, and
#: the launcher plugins of the ``cluster`` extra (conf/hydra/launcher/). Anything else a config names
#: under ``hydra`` would run code before the config is checked.
HYDRA_TARGETS = ("flipout_repro.cli.hooks.TrainHooks", "hydra._internal.core_plugins.",
                 "hydra_plugins.hydra_joblib_launcher.", "hydra_plugins.hydra_submitit_launcher.")
#: Options that bring in config files from outside conf/ (a preset of the user's may hold a ``hydra:`` node)
_CONFIG_OPTIONS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def _option(args: list[str], names: tuple[str, ...]) -> str | None:
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def hydra_code_problem(args: list[str]) -> ConfigError | None:
    """A ConfigError when the config the command line composes would make Hydra run code or write outside
    ``results_dir`` before the config is checked: a ``_target_`` under ``hydra`` other than
    :data:`HYDRA_TARGETS` (``+hydra.callbacks.x={_target_: shutil.copyfile, ...}``), a logging factory
    (``()``) or handler class outside ``logging``, a log file, ``hydra.run.dir`` or ``hydra.sweep.dir``
    outside ``results_dir``. Composed (Hydra's compose API, which instantiates nothing) only when the
    command line touches ``hydra`` or names config files of its own; None otherwise."""
    keys = [o.key_or_group for o in _parse(args)]
    touches = any(k == "hydra" or k.startswith(("hydra.", "hydra/")) for k in keys)
    if not touches and _option(args, _CONFIG_OPTIONS) is None:
        return None
    for cfg in _composed_variants(args):
        problem = _hydra_node_problem(cfg)
        if problem:
            return problem
    return None


def _composed_variants(args: list[str]) -> list:
    """The configs a sweep's command line composes, enough to see every option of every swept group (one
    config per swept value, the others at their first); one config for a single run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    primary = _option(args, ("--config-path", "-cp")) or paths.config_dir()
    name = _option(args, ("--config-name", "-cn")) or "config"
    extra = _option(args, ("--config-dir", "-cd"))
    plain = [a for a in args if not a.startswith("-") and "=" in a]
    skip = {v for v in (_option(args, _CONFIG_OPTIONS),) if v}
    plain = [a for a in plain if a not in skip]
    parsed = OverridesParser.create().parse_overrides(plain)
    base, swept = [], []
    for o, text in zip(parsed, plain):
        if not o.is_sweep_override():
            base.append(text)
            continue
        listed = o.value_type.name in ("CHOICE_SWEEP", "SIMPLE_CHOICE_SWEEP")
        values = [str(v) for v in o.sweep_string_iterator()] if listed else []
        key = text.split("=", 1)[0]
        if values:
            swept.append([f"{key}={v}" for v in values])
    variants = [[*base, *(vals[0] for vals in swept)]]
    for i, vals in enumerate(swept):
        for v in vals[1:]:
            variants.append([*base, *(w[0] if j != i else v for j, w in enumerate(swept))])
    if extra:
        variants = [[*v, f"hydra.searchpath=[file://{os.path.abspath(extra)}]"] for v in variants]
    configs = []
    with initialize_config_dir(config_dir=os.path.abspath(primary), version_base="1.3"):
        for v in variants:
            configs.append(compose(config_name=name, overrides=v, return_hydra_config=True))
    return configs


def _hydra_node_problem(cfg) -> ConfigError | None:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg.hydra, resolve=False)
    results = str(OmegaConf.select(cfg, "results_dir", throw_on_resolution_failure=False) or "")
    fix = "remove it: flipout-train runs only its own Hydra callback, Hydra's launchers and the cluster extra's"

    def walk(value, where: str):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{where}.{k}")
                yield where, str(k), v
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, f"{where}[{i}]")

    for where, key, value in walk(node, "hydra"):
        logging_node = where.startswith(("hydra.job_logging", "hydra.hydra_logging"))
        if key == "_target_" and not str(value).startswith(HYDRA_TARGETS):
            return ConfigError(f"{where}._target_", value, "would run code before the config is checked", fix)
        if logging_node and key == "()":
            return ConfigError(f"{where}.()", value, "would run code (a logging factory)", fix)
        if logging_node and key == "class" and not str(value).startswith("logging."):
            return ConfigError(f"{where}.class", value, "is not a handler of Python's logging", fix)
        if logging_node and key == "filename" and not _inside(str(value), results, "${hydra.runtime.output_dir}/"):
            return ConfigError(f"{where}.filename", value, "lies outside results_dir",
                               "leave Hydra's job log where it is (under results_dir/hydra)")
    for key in ("run.dir", "sweep.dir"):
        value = OmegaConf.select(cfg.hydra, key, throw_on_resolution_failure=False)
        if value is not None and not _inside(str(value), results):
            return ConfigError(f"hydra.{key}", value, "lies outside results_dir",
                               "leave it to results_dir/hydra (nothing is written outside results_dir)")
    return None


def _inside(path: str, root: str, prefix: str | None = None) -> bool:
    """Whether ``path`` lies inside ``root`` (lexically: no ``..`` climbs out), or starts with ``prefix``
    and goes nowhere up from there."""
    if prefix and path.startswith(prefix):
        return ".." not in Path(path[len(prefix):]).parts
    if not root or ".." in Path(path).parts:
        return False
    base = os.path.abspath(root)
    return os.path.commonpath([os.path.abspath(path), base]) == base


def check_command_line(prog: str, args: list[str]) -> None:
    """``--version`` prints :func:`version_line` and exits 0; an unknown key or group option is one line
    and exit code 2."""
    if "--version" in args:
        print(version_line())
        sys.exit(0)
    if {"--help", "-h", "--hydra-help"} & set(args):
        return
    bad = unreadable(args) or unknown_option(prog, args) or foreign_optim_key(args) or relabel_or_copy(args)
    if bad:
        fail(prog, str(bad), BAD_INPUT)
    try:
        bad = hydra_code_problem(args)
    except Exception:  # noqa: BLE001 - a config that does not compose: Hydra says why itself, next
        bad = None
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
