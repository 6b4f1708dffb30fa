"""The value checks every config key goes through; they raise flipout_repro.errors.ConfigError.

It imports only flipout_repro.errors of the package, so config.validate, config.instantiate (the constructor
arguments of methods, models and schedules), the entry points and the report share one set of rules:
floats are finite, booleans are spelled true or false, integers are integers, a value that becomes a
folder of a run's path is a plain name, and a folder to write in is one. The checks of the ``dataset``
group and of ``device`` live here too (the optimisers' in config/optimizers.py); config.validate calls
them in order. torch is imported only by the checks that ask it: config.schema imports this module.
"""
from __future__ import annotations

import importlib.util
import inspect
import netrc
import os
import re
import types
import typing
import urllib.parse
import urllib.request
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from flipout_repro.errors import ConfigError, check_finite


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


#: ``logger`` -> the module it imports and the extra that installs it (training/trackers.py)
TRACKER_EXTRAS = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def check_tracker(cfg: DictConfig) -> None:
    """ConfigError, before anything is written, when ``logger`` names a tracker whose extra is not
    installed, W&B has no API key (and is not offline), or the MLflow server of ``MLFLOW_TRACKING_URI``
    does not answer."""
    logger = str(cfg.get("logger", "tensorboard"))
    if logger not in TRACKER_EXTRAS:
        return
    module, extra = TRACKER_EXTRAS[logger]
    if importlib.util.find_spec(module) is None:
        raise ConfigError("logger", logger, f"needs the {extra} extra, which is not installed",
                          f"pip install -e \".[{extra}]\" (or pip install {module}), or leave logger=tensorboard")
    if logger == "wandb" and os.environ.get("WANDB_MODE", "online") not in ("offline", "disabled", "dryrun") \
            and not os.environ.get("WANDB_API_KEY") and not _netrc_has(_host(os.environ.get("WANDB_BASE_URL")
                                                                                or "https://api.wandb.ai")):
        raise ConfigError("logger", logger, "has no W&B API key (no WANDB_API_KEY, no ~/.netrc entry)",
                          "run `wandb login`, or set WANDB_MODE=offline (then `wandb sync` uploads the run later)")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if logger == "mlflow" and uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
                pass
        except (OSError, ValueError) as exc:
            raise ConfigError("logger", logger, f"cannot reach the MLflow server MLFLOW_TRACKING_URI={uri}"
                              f" ({getattr(exc, 'reason', exc)})", "start it, or unset MLFLOW_TRACKING_URI to log"
                              " to a file store in results_dir/mlruns") from exc


def _host(url: str) -> str:
    return urllib.parse.urlparse(url).hostname or url


def _netrc_has(host: str) -> bool:
    """Whether ~/.netrc (or $NETRC) holds a password for ``host``, as ``wandb login`` writes it."""
    try:
        entry = netrc.netrc(os.environ.get("NETRC")).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])
