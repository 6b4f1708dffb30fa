"""The classes a config names: where a group's ``_target_`` may point (an allow-list: a config runs no
other code), and the one rule that follows from the method's class, that a method which never prunes has
target sparsity 0 (:func:`prepare`)."""
from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from flipout_repro.errors import ConfigError


#: Where a group's ``_target_`` may point: a class defined in one module of the package's
#: methods/ or models/, or in schedule.py, of the group's kind. Nothing else is imported from a config.
#: (where, an example, what the class must have: methods.base.Method's hooks, an nn.Module, a schedule's
#: ``events``; config does not import methods/, which the reporting layer must not reach).
TARGETS: dict[str, tuple[str, str, Any]] = {
    "method": ("flipout_repro.methods.<module>", "flipout_repro.methods.flipout.FlipOut",
               lambda c: callable(getattr(c, "bind", None)) and callable(getattr(c, "scores", None))),
    "model": ("flipout_repro.models.<module>", "flipout_repro.models.vgg.VGG19", lambda c: issubclass(c, nn.Module)),
    "schedule": ("flipout_repro.sparsity.schedule", "flipout_repro.sparsity.schedule.Periodic",
                 lambda c: callable(getattr(c, "events", None))),
}


def import_target(path: str, key: str) -> Any:
    """The class that ``_target_`` names, or a ConfigError. ``key`` (``method._target_``, ...) picks the
    allow-list of :data:`TARGETS`: a config never names other code to import or run."""
    group = key.split(".")[0]
    place, example, is_kind = TARGETS[group]
    module, _, name = str(path).rpartition(".")
    refused = ConfigError(key, path, "is not allowed", f"{key} names a {group} class of {place}, e.g."
                          f" {key}={example} (a config runs no other code)")
    pattern = re.escape(place).replace(re.escape("<module>"), "[a-z_][a-z0-9_]*")
    if not re.fullmatch(pattern, module) or not name.isidentifier():
        raise refused
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(key, path, "cannot be imported", f"check the module path ({exc})") from exc
    if not (inspect.isclass(obj) and obj.__module__ == module and is_kind(obj)):
        raise refused
    return obj


def effective_sparsity(cfg: DictConfig, method: Any = None) -> float:
    """The target the run prunes to: 0 for methods that never prune (``dense``). ``method``: the run's
    method, or its class (resolved from ``method._target_`` when not given)."""
    method = method if method is not None else import_target(cfg.method._target_, "method._target_")
    return float(cfg.sparsity) if getattr(method, "prunes", True) else 0.0


def prepare(cfg: DictConfig, method: Any = None) -> tuple[DictConfig, float]:
    """(config, target sparsity) of the run ``cfg`` describes: a method that never prunes (``dense``)
    has target 0 and its ``sparsity`` is recorded as 0, so dense runs of any ``sparsity`` share a folder."""
    target = effective_sparsity(cfg, method)
    if target == cfg.sparsity:
        return cfg, target
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.sparsity = 0.0
    return cfg, target
