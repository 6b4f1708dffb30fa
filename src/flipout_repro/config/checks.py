"""The value checks every config key goes through; they raise flipout_repro.errors.ConfigError.

It imports only flipout_repro.errors of the package, so config.validate, config.instantiate (the constructor
arguments of methods, models and schedules), the entry points and the report share one set of rules:
floats are finite, booleans are spelled true or false, integers are integers, a value that becomes a
folder of a run's path is a plain name, and a folder to write in is one. The checks of the ``dataset``
group and of ``device`` live here too (the optimisers' in config/optimizers.py); config.validate calls
them in order. torch is imported only by the checks that ask it: config.schema imports this module.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import types
import typing
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from flipout_repro.errors import ConfigError


def check_finite(key: str, value: Any, fix: str = "") -> None:
    """ConfigError for NaN or an infinity in ``value`` (or in any element of a list or mapping in it)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, value, "must be a finite number", fix)
    if isinstance(value, (list, tuple)):
        for v in value:
            check_finite(key, v, fix)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_finite(f"{key}.{k}", v, fix)


#: a folder name of a run's path: no separator, not ``.`` or ``..``, nothing hidden
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_plain_name(key: str, value: Any, example: str) -> None:
    """ConfigError unless ``value`` can be one folder of a run's path (it must not climb out of
    results_dir or hide): letters, digits, ``_ . + -``, not starting with ``.``."""
    if not isinstance(value, str) or not _PLAIN.fullmatch(value):
        raise ConfigError(key, value, "is not a plain name (it is a folder of the run's path)",
                          f"use letters, digits and _ . + - (not first), e.g. {key}={example}")


def check_argument(key: str, value: Any, hint: Any, default: Any = inspect.Parameter.empty) -> None:
    """A constructor argument against its type hint: ``bool`` takes only true/false, ``int`` an integer,
    ``float`` a finite number (an integer too); ``X | None`` also None. Other hints: finiteness only."""
    fix = "" if default is inspect.Parameter.empty else f"e.g. {key}={_spelled(default)}"
    check_finite(key, value, fix)
    kinds = _kinds(hint)
    if not kinds or str in kinds or (value is None and type(None) in kinds):
        return  # nothing to check by type (a string may hold anything its constructor accepts)
    if kinds <= {bool, type(None)}:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "must be true or false", f"use {key}=true or {key}=false")
    elif float in kinds:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ConfigError(key, value, "must be a number", fix)
    elif int in kinds and (isinstance(value, bool) or not isinstance(value, Integral)):
        raise ConfigError(key, value, "must be an integer", fix)


def _kinds(hint: Any) -> set:
    """{bool}, {float, NoneType}, ... for a type hint; empty when it says nothing checkable."""
    if hint in (bool, int, float, str, type(None)):
        return {hint}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        out = set()
        for arg in typing.get_args(hint):
            out |= _kinds(arg)
        return out
    return set()


def _spelled(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else "null" if value is None else str(value)


def type_hints(cls: Any) -> dict[str, Any]:
    """The constructor's resolved type hints (empty when they cannot be resolved)."""
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - a hint that does not resolve is checked as no hint
        return {}


def check_bool_overrides(overrides: list[str], bool_keys: set[str]) -> None:
    """Command-line overrides of boolean keys must be spelled true or false (any case): the schema would
    read ``resume=no`` or ``compile=1`` as a boolean, which is easy to misread and was never meant."""
    for ov in OverridesParser.create().parse_overrides(list(overrides)):
        key = ov.key_or_group
        if key not in bool_keys or ov.is_delete() or ov.is_sweep_override():
            continue
        if not isinstance(ov.value(), bool):
            raise ConfigError(key, ov.get_value_element_as_str(), "must be true or false",
                              f"use {key}=true or {key}=false")


def writable_folder_problem(folder: str | Path) -> str:
    """Why nothing can be written under ``folder`` ("" if it can): it, or the nearest part of its path
    that exists, must be a folder this process may write in."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return "is not a folder" if probe == folder else f"is not a folder ({probe} is a file)"
    if not os.access(probe, os.W_OK | os.X_OK):
        return "is not writable" if probe == folder else f"is not writable ({probe} is read-only)"
    return ""


def number(cfg: DictConfig, key: str, kind: type, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = True, fix: str = "") -> Any:
    """``cfg``'s value at ``key``: an integer (``kind`` int) or a finite number in the range given."""
    value = OmegaConf.select(cfg, key)
    ok_type = isinstance(value, Integral) if kind is int else isinstance(value, Real)
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(key, value, f"must be {'an integer' if kind is int else 'a number'}", fix)
    check_finite(key, value, fix)
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ConfigError(key, value, f"must be in {rng}", fix)
    return value


def choice(cfg: DictConfig, key: str, allowed: tuple) -> None:
    """``cfg``'s value at ``key`` is one of ``allowed`` (booleans by identity: 1 is not true)."""
    value = OmegaConf.select(cfg, key)
    if not any(value is a if isinstance(a, bool) else value == a for a in allowed):
        spelled = [str(a).lower() if isinstance(a, bool) else str(a) for a in allowed]  # as typed on the CLI
        raise ConfigError(key, value, "is not a valid choice", f"use one of {', '.join(spelled)}")


def check_dataset(cfg: DictConfig) -> None:
    """``dataset.*`` (the labels against ``num_classes`` are checked once the data is loaded)."""
    d = "dataset"
    number(cfg, f"{d}.in_channels", int, 1, None, fix="e.g. dataset.in_channels=3")
    number(cfg, f"{d}.image_size", int, 1, None, fix="the side the model sees, e.g. dataset.image_size=32")
    number(cfg, f"{d}.num_classes", int, 1, None, fix="e.g. dataset.num_classes=10")
    number(cfg, f"{d}.crop_padding", int, 0, None, fix="pixels of zero padding, e.g. 4, or 0 for no crop")
    for key in ("mean", "std"):
        values = list(cfg.dataset[key])
        check_finite(f"{d}.{key}", values, f"one value a channel, e.g. {d}.{key}=[0.5]")
    if any(v <= 0 for v in cfg.dataset.std):
        raise ConfigError(f"{d}.std", list(cfg.dataset.std), "must be positive", "one value a channel, e.g. [0.3081]")
    ds = cfg.dataset
    if ds.resize is not None:
        number(cfg, "dataset.resize", int, 1, None, fix="give the side in pixels, e.g. dataset.resize=32, or null")
        if ds.resize != ds.image_size:
            raise ConfigError("dataset.resize", ds.resize, f"differs from dataset.image_size={ds.image_size}",
                              f"set dataset.image_size={ds.resize} too (the side the model sees)")
    number(cfg, "dataset.train_fraction", float, 0, 1, lo_open=True, hi_open=False,
           fix="the fraction of the training set to train on, e.g. 0.9 (FORCE's), or 1.0 for all of it")
    if ds.workers is not None:
        number(cfg, "dataset.workers", int, 0, None, fix="e.g. dataset.workers=8 (0: decode in this process), or null")
    if ds.eval_resize is None:  # an in-memory set (data.load refuses a streamed one without it)
        if ds.decode != "workers":
            raise ConfigError("dataset.decode", ds.decode, "applies to streamed sets only (dataset=imagenet)",
                              "set dataset.decode=workers")
        return
    number(cfg, "dataset.eval_resize", int, ds.image_size, None,
           fix=f"the shorter side before the center crop of {ds.image_size}, e.g. 256 for 224")
    for key, value in (("crop_padding", 0), ("resize", None)):
        if ds[key] != value:  # a streamed set: RandomResizedCrop crops and resizes
            raise ConfigError(f"dataset.{key}", ds[key], "does not apply with dataset.eval_resize="
                              f"{ds.eval_resize} (a streamed set: RandomResizedCrop crops and resizes each image)",
                              f"set dataset.{key}={'null' if value is None else 0}")


def check_device(device: Any) -> None:
    """auto, cpu, cuda or cuda:N of a visible GPU."""
    import torch  # here: the schema's optimisers use this module, and --help imports no torch
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


def check_quantization(cfg: DictConfig, backends: tuple) -> None:
    """``quantization.*`` (the schema's choices are checked already): a backend this torch build has, a
    number of calibration batches."""
    import torch
    q = cfg.quantization
    supported = torch.backends.quantized.supported_engines
    if cfg.quantize and q.backend not in supported:
        raise ConfigError("quantization.backend", q.backend, "is not supported by this torch build",
                          f"use one of {', '.join(e for e in backends if e in supported)}")
    n = q.calibration_batches
    if n != "all" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError("quantization.calibration_batches", n, "must be a positive integer or all",
                          "e.g. quantization.calibration_batches=32, or all for one pass over the training set")
