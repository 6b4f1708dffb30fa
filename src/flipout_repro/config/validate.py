"""Compose, validate and instantiate run configs; every error names the key, the value and the fix.

Hydra already rejects unknown config group options (flipout-train refuses them first, with the
closest options: cli/overrides.py), and the schema (schema.RunConfig, registered when this module is
imported) rejects unknown keys and values of the wrong type. This module checks the values: ranges,
combinations, and that the schedule fits in the epochs, so that no training starts and nothing on disk
is touched when the input is bad. It also holds the one rule for methods that never prune
(:func:`prepare`).
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from numbers import Real
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flipout_repro.config import launch, optimizers, paths, schema
from flipout_repro.config.checks import (check_argument, check_bool_overrides, check_device, check_plain_name,
                                         check_quantization, check_tracker, type_hints, writable_folder_problem)
from flipout_repro.config.targets import effective_sparsity, import_target
from flipout_repro.data import rules as data_rules
from flipout_repro.errors import ConfigError, check_finite, choice, number
from flipout_repro.sparsity import budgets, patterns

schema.register()  # run_schema, the first entry of conf/config.yaml's defaults
launch.register_resolvers()  # ${job_device:}, ${local_jobs:}, ${paper_batches:} used by the presets
if not OmegaConf.has_resolver("nm_sparsity"):  # conf/pattern/nm.yaml: sparsity = (m - n)/m
    OmegaConf.register_new_resolver("nm_sparsity", patterns.nm_sparsity)



def group_kwargs(node: DictConfig) -> dict[str, Any]:
    """A config group's constructor arguments: everything but ``_target_`` and ``name``."""
    d = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in d.items() if k not in ("_target_", "name")}


def instantiate(node: DictConfig, key: str, cls: Any = None, **extra: Any) -> Any:
    """Build the object a group config describes (of class ``cls`` when its ``_target_`` is resolved
    already); bad arguments become a ConfigError naming ``key``."""
    cls = cls or import_target(node._target_, f"{key}._target_")
    kwargs = group_kwargs(node)
    if "name" in node and "name" in _params(cls):
        kwargs["name"] = node.name
    check_group_args(cls, kwargs, key)
    try:
        return cls(**kwargs, **extra)
    except TypeError as exc:
        raise ConfigError(key, node.get("name", node._target_), f"got an argument it does not take ({exc})",
                          "remove or rename the key") from exc
    except ConfigError:  # a constructor's own check names the knob at fault
        raise
    except ValueError as exc:
        raise ConfigError(key, node.get("name", node._target_), f"is invalid: {exc}") from exc


def check_group_args(cls: Any, kwargs: dict[str, Any], key: str) -> None:
    """Constructor arguments against the signature's hints: finite floats, true/false booleans, integers."""
    params, hints = _signature(cls), type_hints(cls)
    for arg, value in kwargs.items():
        check_argument(f"{key}.{arg}", value, hints.get(arg), getattr(params.get(arg), "default", _EMPTY))


_EMPTY = inspect.Parameter.empty


def _signature(cls: Any) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return {}


def _params(cls: Any) -> set[str]:
    return set(_signature(cls))


def check_sparsity(value: Any) -> float:
    """The target sparsity: a number in [0, 1). 99.6 gets "did you mean 0.996?"."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError("sparsity", value, "must be a number in [0, 1)",
                          "give the fraction of prunable weights to remove, e.g. sparsity=0.996")
    check_finite("sparsity", value, "e.g. sparsity=0.996")
    if not 0 <= value < 1:
        # 99.6 meant as a percentage; 1 itself would prune every weight (not a percentage of 1 %)
        fix = f"did you mean {value / 100:g}?" if 1 < value < 100 else \
            "1 would prune every weight; e.g. sparsity=0.996" if value == 1 else "e.g. sparsity=0.996"
        raise ConfigError("sparsity", value, "must be in [0, 1)", fix)
    return float(value)


def check_keys(cfg: DictConfig) -> None:
    """Keys that the schema lacks: Hydra's ``+key=value`` adds them past the schema, so they are
    refused here, with the closest existing key."""
    known = schema.key_paths()
    sections = {k.split(".")[0] for k in known if "." in k}
    for top in cfg:
        names = [f"{top}.{k}" for k in cfg[top]] if top in sections else [str(top)]
        for key in names:
            if key not in known:
                raise unknown_key_error(key, OmegaConf.select(cfg, key))


def unknown_key_error(key: str, value: Any) -> ConfigError:
    """``key=value is not a config key: did you mean <our key for it / the closest key paths>?``"""
    close = suggest_keys(key)
    fix = f"did you mean {' or '.join(close)}?" if close else "remove it (flipout-train --cfg job lists the keys)"
    return ConfigError(key, value, "is not a config key", fix)


def suggest_keys(key: str) -> list[str]:
    """The keys ``key`` may have meant: our key for what other tools call it (schema.SYNONYMS, by its last
    part: ``learning_rate`` and ``optim.learning_rate`` -> ``optim.lr``), else the keys that end in the same
    name, else the closest key paths, last parts or synonyms (difflib: ``learnin_rate`` -> ``optim.lr``);
    at most three."""
    known = schema.key_paths()
    leaf = key.split(".")[-1].lower().replace("-", "_")
    if leaf in schema.SYNONYMS:
        return [schema.SYNONYMS[leaf]]
    same = [k for k in known if k.split(".")[-1] == leaf]
    if same:
        return same[:3]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.7)
    by_leaf = {k.split(".")[-1]: k for k in known} | schema.SYNONYMS  # a typo of a synonym: learnin_rate
    for m in difflib.get_close_matches(leaf, list(by_leaf), n=3, cutoff=0.75):
        if by_leaf[m] not in close:
            close.append(by_leaf[m])
    return close[:3]


@dataclass
class Checked:
    """What validation built, each once: the method (not yet bound to a model) and the schedule; the run
    prepares its config with them and training.build binds them."""

    method: Any
    schedule: Any


def validate(cfg: DictConfig) -> Checked:
    """Raise ConfigError on the first bad value of a composed run config. Every key of the schema is
    checked here (or, for model/method/schedule knobs, by their constructors: validation builds the method
    and the schedule and returns them); ``dataset.num_classes`` against the data's labels once the data is
    loaded (training.build)."""
    _check_resolvable(cfg)
    check_keys(cfg)
    method_cls = import_target(cfg.method._target_, "method._target_")
    check_axes(cfg, method_cls)
    check_sparsity(cfg.sparsity)
    number(cfg, "epochs", int, 1, None, fix="give the number of training epochs, e.g. epochs=350")
    number(cfg, "seed", int, 0, 2**32, fix="numpy's seeds are 32-bit, e.g. seed=0")
    number(cfg, "batch_size", int, 1, None, fix="e.g. batch_size=128")
    number(cfg, "eval_batch_size", int, 1, None, fix="e.g. eval_batch_size=1000")
    check_device(cfg.device)
    for key, allowed in schema.choices():  # the schema's fields declare them
        choice(cfg, key, allowed)
    problem = writable_folder_problem(str(cfg.results_dir))
    if problem:
        raise ConfigError("results_dir", cfg.results_dir, problem, "pass results_dir=DIR, a folder you can write in")
    for key, example in (("model.name", "vgg19"), ("dataset.name", "cifar10"), ("method.name", "flipout")):
        check_plain_name(key, OmegaConf.select(cfg, key), example)  # each is a folder of the run's path
    optimizers.check(cfg)
    number(cfg, "loss.label_smoothing", float, 0, 1, fix="e.g. loss.label_smoothing=0.1 (STR's), or 0 for none")
    choice(cfg, "model.init", schema.MODEL_INITS)
    data_rules.check_config(cfg)
    model_cls = import_target(cfg.model._target_, "model._target_")
    check_group_args(model_cls, {k: v for k, v in group_kwargs(cfg.model).items()
                                 if k not in ("init", "init_from", "init_from_sha256")}, "model")
    ds = cfg.dataset
    need = getattr(model_cls, "min_input_size", 1)
    sides = getattr(model_cls, "input_sizes", None)  # a model that fits some image sides only
    if sides is not None and ds.image_size not in sides:
        fits = " or ".join(f"{s}x{s}" for s in sides)
        raise ConfigError("dataset.image_size", ds.image_size, f"does not fit model={cfg.model.name}, which takes"
                          f" {fits} images only (dataset={ds.name})", f"use a {fits} data set (cifar10, cifar100,"
                          f" mnist5k), or dataset.resize={sides[0]} dataset.image_size={sides[0]}")
    if ds.image_size < need:
        raise ConfigError("model", cfg.model.name,
                          f"needs images of at least {need}x{need}, but dataset={ds.name} has"
                          f" {ds.image_size}x{ds.image_size}",
                          "pick a model that fits (lenet300_100, lenet5 or resnet18 for MNIST)")
    method = instantiate(cfg.method, "method", method_cls)  # the constructor checks its knobs (no model yet)
    method.use_budget(budgets.Budget(cfg.budget.name, cfg.budget.dense_first, cfg.budget.dense_last))
    schedule = check_schedule(cfg, method)
    check_quantization(cfg, schema.BACKENDS)
    check_tracker(cfg)  # logger=wandb|mlflow: the extra installed, the service there
    return Checked(method, schedule)


def check_axes(cfg: DictConfig, cls: Any) -> None:
    """``budget`` and ``pattern``: known values, a method (of class ``cls``) that takes them, an nm run's
    sparsity (the model's layers are checked once it is built: training.build)."""
    b, p = cfg.budget, cfg.pattern
    takes = getattr(cls, "any_budget", True)
    if p.name != "unstructured" and not getattr(cls, "prunes", True):
        raise ConfigError("pattern", p.name, f"does not apply to method={cfg.method.name}, which prunes nothing",
                          "drop pattern= (pattern=unstructured), or pick a method that prunes")
    if p.name != "unstructured" and not getattr(cls, "any_pattern", True):
        why = getattr(cls, "pattern_refusal", "which keeps no N:M groups")
        raise ConfigError("pattern", p.name, f"does not apply to method={cfg.method.name}, {why}",
                          "drop pattern= (pattern=unstructured)")
    budgets.check_config(b.name, b.dense_first, b.dense_last, p.name, cfg.method.name, takes)
    patterns.check_config(p.name, p.n, p.m, b.name, cfg.sparsity)


def _check_resolvable(cfg: DictConfig) -> None:
    """Every ``${...}`` resolves (``epochs=${nope}`` is a ConfigError naming the key, not a traceback)."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", None) or "config")
        raw: Any = OmegaConf.to_container(cfg)  # unresolved: the value as written
        for part in key.split("."):
            raw = raw.get(part) if isinstance(raw, dict) else None
        raise ConfigError(key, raw, "cannot be resolved", f"{str(exc).splitlines()[0]}; give a value, or an"
                          " interpolation of an existing key") from exc


def check_schedule(cfg: DictConfig, method: Any = None) -> Any:
    """The schedule, built and its events computed once (steps per epoch do not matter for fitting): a knob
    that does not fit this run (``schedule.epoch`` past the end) or ``epochs`` too short for it is a
    ConfigError."""
    schedule = instantiate(cfg.schedule, "schedule")
    schedule.events(effective_sparsity(cfg, method), cfg.epochs, 1)
    return schedule


def compose_config(*overrides: str) -> DictConfig:
    """The run config ``flipout-train OVERRIDES`` composes (no Hydra job; for tools and tests)."""
    with initialize_config_dir(config_dir=paths.config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    check_overrides(list(overrides))
    return cfg


def check_overrides(overrides: list[str]) -> None:
    """What only the command line shows: a boolean key spelled otherwise than true/false (the schema
    would read ``resume=no`` as false and ``optim.nesterov=1`` as true)."""
    check_bool_overrides(overrides, BOOL_KEYS)


#: the schema's boolean keys
BOOL_KEYS = set(schema.bool_keys())
