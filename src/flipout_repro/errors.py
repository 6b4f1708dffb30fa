"""ConfigError: the one error of a bad config value, raised by every layer, and the checks of numbers and
choices that raise it (the bottom of the import layers: it imports nothing of the package, so the sparsity
and data packages, config, training and the entry points share it).
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A bad config value; ``str(err)`` is the whole message for the user: ``key=value problem: fix``
    (``sparsity=99.6 must be in [0, 1): did you mean 0.996?``)."""

    def __init__(self, key: str, value: object, problem: str, fix: str = "") -> None:
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key}={value!r} {problem}" + (f": {fix}" if fix else ""))


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
