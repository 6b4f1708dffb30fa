"""Compose, validate and instantiate run configs; every error names the key, the value and the fix.

Hydra already rejects unknown config groups (``method=foo`` lists the valid options), and the schema
(schema.RunConfig, registered when this module is imported) rejects unknown keys and values of the
wrong type. This module checks the values: ranges, combinations, and that the schedule fits in the
epochs, so that no training starts and nothing on disk is touched when the input is bad. It also holds
the one rule for methods that never prune (:func:`prepare`).
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from numbers import Integral, Real
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from flipout_repro import launch, paths, schema
from flipout_repro.schedule import ScheduleError

schema.register()  # run_schema, the first entry of conf/config.yaml's defaults
launch.register_resolvers()  # ${job_device:}, ${local_jobs:}, ${paper_batches:} used by the presets

#: The FlipOut paper's five levels, as its code reaches them (1 - 2^-k, k = 2, 4, 6, 8, 10; the "99.9 %"
#: column is 0.9990234375): the suggestions of the sparsity check and the figures' ticks.
SPARSITY_HINTS = (0.75, 0.9375, 0.984375, 0.99609375, 0.9990234375)


class ConfigError(ValueError):
    """A bad config value; ``str(err)`` is the whole message for the user."""

    def __init__(self, key: str, value: Any, problem: str, fix: str = "") -> None:
        msg = f"{key}={value!r} {problem}"
        if fix:
            msg += f": {fix}"
        super().__init__(msg)
        self.key, self.value = key, value


def import_target(path: str, key: str) -> Any:
    """The class or function that ``_target_`` names, or a ConfigError."""
    module, _, name = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(key, path, "cannot be imported", f"check the module path ({exc})") from exc


def group_kwargs(node: DictConfig) -> dict[str, Any]:
    """A config group's constructor arguments: everything but ``_target_`` and ``name``."""
    d = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in d.items() if k not in ("_target_", "name")}


def instantiate(node: DictConfig, key: str, **extra: Any) -> Any:
    """Build the object a group config describes; bad arguments become a ConfigError naming ``key``."""
    cls = import_target(node._target_, f"{key}._target_")
    kwargs = group_kwargs(node)
    if "name" in node and "name" in _params(cls):
        kwargs["name"] = node.name
    try:
        return cls(**kwargs, **extra)
    except TypeError as exc:
        raise ConfigError(key, node.get("name", node._target_), f"got an argument it does not take ({exc})",
                          "remove or rename the key") from exc
    except ValueError as exc:
        raise ConfigError(key, node.get("name", node._target_), f"is invalid: {exc}") from exc


def _params(cls: Any) -> set[str]:
    try:
        return set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return set()


def _number(cfg: DictConfig, key: str, kind: type, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = True, fix: str = "") -> Any:
    value = OmegaConf.select(cfg, key)
    ok_type = isinstance(value, Integral) if kind is int else isinstance(value, Real)
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(key, value, f"must be {'an integer' if kind is int else 'a number'}", fix)
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ConfigError(key, value, f"must be in {rng}", fix)
    return value


def _choice(cfg: DictConfig, key: str, allowed: tuple) -> None:
    value = OmegaConf.select(cfg, key)
    if not any(value is a if isinstance(a, bool) else value == a for a in allowed):
        spelled = [str(a).lower() if isinstance(a, bool) else str(a) for a in allowed]  # as typed on the CLI
        raise ConfigError(key, value, "is not a valid choice", f"use one of {', '.join(spelled)}")


def check_sparsity(value: Any) -> float:
    """The target sparsity: a number in [0, 1). 99.6 gets "did you mean 0.996?"."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError("sparsity", value, "must be a number in [0, 1)",
                          "give the fraction of prunable weights to remove, e.g. sparsity=0.996")
    if not 0 <= value < 1:
        fix = f"did you mean {value / 100:g}?" if 1 <= value < 100 else "e.g. sparsity=0.996"
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
                raise ConfigError(key, OmegaConf.select(cfg, key), "is not a config key", _did_you_mean(key, known))


def _did_you_mean(key: str, known: list[str]) -> str:
    leaf = key.split(".")[-1]
    close = [k for k in known if k.split(".")[-1] == leaf] or difflib.get_close_matches(key, known, n=2)
    return f"did you mean {' or '.join(close)}?" if close else "remove it (flipout-train --cfg job lists the keys)"


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first bad value of a composed run config."""
    check_keys(cfg)
    check_sparsity(cfg.sparsity)
    _number(cfg, "epochs", int, 1, None, fix="give the number of training epochs, e.g. epochs=350")
    _number(cfg, "seed", int, 0, None, fix="use a non-negative integer seed")
    _number(cfg, "batch_size", int, 1, None, fix="e.g. batch_size=128")
    _number(cfg, "eval_batch_size", int, 1, None, fix="e.g. eval_batch_size=1000")
    _check_device(cfg.device)
    _choice(cfg, "precision", ("auto", "bf16", "fp32"))
    _choice(cfg, "channels_last", ("auto", True, False))
    _choice(cfg, "compile", (True, False))
    _choice(cfg, "deterministic", (True, False))

    o = "optim"
    _number(cfg, f"{o}.lr", float, 0, None, lo_open=True, fix="e.g. optim.lr=0.1")
    _number(cfg, f"{o}.momentum", float, 0, 1, fix="e.g. optim.momentum=0.9")
    _number(cfg, f"{o}.weight_decay", float, 0, None, fix="e.g. optim.weight_decay=0.0005")
    _number(cfg, f"{o}.gamma", float, 0, 1, lo_open=True, hi_open=False, fix="e.g. optim.gamma=0.1")
    _number(cfg, f"{o}.milestones_of", int, 1, None, fix="the run length the milestones refer to, e.g. 350")
    ms = list(cfg.optim.milestones)
    if any(isinstance(m, bool) or not isinstance(m, Integral) or m < 1 for m in ms) or ms != sorted(ms):
        raise ConfigError("optim.milestones", ms, "must be increasing positive epochs",
                          "e.g. optim.milestones=[150,250]")
    _choice(cfg, f"{o}.schedule", schema.LR_SCHEDULES)
    warmup = _number(cfg, f"{o}.warmup_epochs", int, 0, None, fix="e.g. optim.warmup_epochs=5")
    if warmup >= cfg.epochs:
        raise ConfigError(f"{o}.warmup_epochs", warmup, f"must be below epochs={cfg.epochs}",
                          f"e.g. optim.warmup_epochs={cfg.epochs // 20}, or more epochs")
    _number(cfg, "loss.label_smoothing", float, 0, 1, fix="e.g. loss.label_smoothing=0.1 (STR's), or 0 for none")
    if "init" in cfg.model:  # absent in run folders written before it existed: default
        _choice(cfg, "model.init", schema.MODEL_INITS)

    check_dataset(cfg)
    ds = cfg.dataset
    model_cls = import_target(cfg.model._target_, "model._target_")
    need = getattr(model_cls, "min_input_size", 1)
    if ds.image_size < need:
        raise ConfigError("model", cfg.model.name,
                          f"needs images of at least {need}x{need}, but dataset={ds.name} has"
                          f" {ds.image_size}x{ds.image_size}",
                          "pick a model that fits (lenet300_100, lenet5 or resnet18 for MNIST)")
    instantiate(cfg.method, "method")  # constructors check their knobs (cheap: no model yet)
    check_schedule(cfg)
    check_quantization(cfg)


def check_dataset(cfg: DictConfig) -> None:
    """``dataset.*``: resize, train_fraction, workers, and the keys a streamed set (eval_resize set) excludes;
    which data sets stream, and which cannot be downloaded, data.load checks."""
    ds = cfg.dataset
    if ds.resize is not None:
        _number(cfg, "dataset.resize", int, 1, None, fix="give the side in pixels, e.g. dataset.resize=32, or null")
        if ds.resize != ds.image_size:
            raise ConfigError("dataset.resize", ds.resize, f"differs from dataset.image_size={ds.image_size}",
                              f"set dataset.image_size={ds.resize} too (the side the model sees)")
    _number(cfg, "dataset.train_fraction", float, 0, 1, lo_open=True, hi_open=False,
            fix="the fraction of the training set to train on, e.g. 0.9 (FORCE's), or 1.0 for all of it")
    if ds.workers is not None:
        _number(cfg, "dataset.workers", int, 0, None, fix="e.g. dataset.workers=8 (0: decode in this process), or null")
    if ds.eval_resize is None:  # an in-memory set (data.load refuses a streamed one without it)
        return
    _number(cfg, "dataset.eval_resize", int, ds.image_size, None,
            fix=f"the shorter side before the center crop of {ds.image_size}, e.g. 256 for 224")
    for key, value in (("crop_padding", 0), ("resize", None)):
        if ds[key] != value:  # a streamed set: RandomResizedCrop crops and resizes
            raise ConfigError(f"dataset.{key}", ds[key], "does not apply with dataset.eval_resize="
                              f"{ds.eval_resize} (a streamed set: RandomResizedCrop crops and resizes each image)",
                              f"set dataset.{key}={'null' if value is None else 0}")


def check_schedule(cfg: DictConfig) -> None:
    """Build the schedule and its events once (steps per epoch do not matter for fitting)."""
    schedule = instantiate(cfg.schedule, "schedule")
    try:
        schedule.events(effective_sparsity(cfg), cfg.epochs, 1)
    except ScheduleError as exc:
        raise ConfigError("epochs", cfg.epochs, f"is too short for the schedule ({exc})") from exc


def effective_sparsity(cfg: DictConfig) -> float:
    """The target the run prunes to: 0 for methods that never prune (``dense``)."""
    cls = import_target(cfg.method._target_, "method._target_")
    return float(cfg.sparsity) if getattr(cls, "prunes", True) else 0.0


def check_quantization(cfg: DictConfig) -> None:
    """``quantization.*`` values (the schema has already checked the keys and ``quantize`` itself)."""
    q = cfg.quantization
    for key, allowed in (("observer", schema.OBSERVERS), ("backend", schema.BACKENDS)):
        if q[key] not in allowed:
            raise ConfigError(f"quantization.{key}", q[key], f"is not a valid {key}", f"use one of {', '.join(allowed)}")
    supported = torch.backends.quantized.supported_engines
    if cfg.quantize and q.backend not in supported:
        raise ConfigError("quantization.backend", q.backend, "is not supported by this torch build",
                          f"use one of {', '.join(e for e in schema.BACKENDS if e in supported)}")
    n = q.calibration_batches
    if n != "all" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError("quantization.calibration_batches", n, "must be a positive integer or all",
                          "e.g. quantization.calibration_batches=32, or all for one pass over the training set")


def prepare(cfg: DictConfig) -> tuple[DictConfig, float]:
    """(config, target sparsity) of the run ``cfg`` describes: a method that never prunes (``dense``)
    has target 0 and its ``sparsity`` is recorded as 0, so dense runs of any ``sparsity`` share a folder."""
    target = effective_sparsity(cfg)
    if target == cfg.sparsity:
        return cfg, target
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.sparsity = 0.0
    return cfg, target


def compose_config(*overrides: str) -> DictConfig:
    """The run config ``flipout-train OVERRIDES`` composes (no Hydra job; for tools and tests)."""
    with initialize_config_dir(config_dir=paths.config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _check_device(device: Any) -> None:
    d = str(device)
    if d in ("auto", "cpu"):
        return
    if d.startswith("cuda"):
        try:
            torch.device(d)
        except RuntimeError as exc:
            raise ConfigError("device", device, "is not a device name", "use auto, cpu, cuda or cuda:N") from exc
        if not torch.cuda.is_available():
            raise ConfigError("device", device, "was asked for, but no CUDA GPU is visible",
                              "use device=auto or device=cpu")
        index, count = torch.device(d).index, torch.cuda.device_count()
        if index is not None and index >= count:
            raise ConfigError("device", device, f"is not there: {count} GPU(s) are visible",
                              f"use cuda:0 to cuda:{count - 1} (or check CUDA_VISIBLE_DEVICES)")
        return
    raise ConfigError("device", device, "is not supported", "use auto, cpu, cuda or cuda:N")
