"""Which runs a report covers: ``--where KEY=VALUE`` on what a run is, and ``--sweep NAME`` (the runs of one
sweep preset's jobs).

A key is one of a run's identity (config/identity.py, ``Identity.flat()`` without its ``protocol.`` or
``axes.`` prefix: ``epochs``, ``optim.lr``, ``method.name``, ``budget.name``, ``sparsity``, ...) or of its
resolved config (``optim.momentum``), so ``optim.lr=0.1`` finds the runs that trained at 0.1 whether or
not that is their optimiser's default. The identity's value wins where both have one: ``budget.name`` is
the layer budget a run used (``global``, ``uniform``, ``erk``), not ``method``. A group's name alone stands
for its ``.name`` (``method=rigl``, ``model=vgg19``). Values compare as numbers where both are numbers
(``1e-7`` is ``1.0e-07``), else as text.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import yaml

from flipout_repro.config.identity import Identity, flatten
from flipout_repro.reporting.sweep_status import check_sweep, sweep_jobs


def run_keys(ident: Identity, config: Mapping[str, Any]) -> dict[str, Any]:
    """Every value ``--where`` can ask of a run: its config flattened, its identity's values over it, its seed."""
    keys = flatten(config)
    keys.update({k.split(".", 1)[1]: v for k, v in ident.flat().items()})
    keys["seed"] = ident.seed
    return keys


def identity_keys(ident: Identity) -> set[str]:
    """The keys of ``ident`` as ``--where`` names them (``epochs``, ``budget.name``), and ``seed``."""
    return {k.split(".", 1)[1] for k in ident.flat()} | {"seed"}


def parse_where(items: list[str]) -> list[tuple[str, str]]:
    """``["epochs=10", "method=rigl"]`` -> ``[("epochs", "10"), ("method", "rigl")]``; ValueError for an item
    that is not KEY=VALUE."""
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--where {item!r} is not KEY=VALUE: e.g. --where epochs=10 or --where method=rigl")
        out.append((key.strip(), value.strip()))
    return out


def resolve_where(where: list[tuple[str, str]], named: set[str], known: set[str]) -> list[tuple[str, str]]:
    """``where`` with shorthands spelled out (``method`` -> ``method.name``). ``named``: the identity keys of
    the runs (listed in the message), ``known``: every key they have (config keys too). ValueError naming
    the key, its value and the keys there are, for a key no run has."""
    out = []
    for key, value in where:
        if key not in known and f"{key}.name" in known:
            key = f"{key}.name"
        elif key not in known:
            raise ValueError(f"--where {key}={value}: no run here has the key {key!r}; use one of "
                             f"{', '.join(sorted(named))} (or any key of a run's config.yaml, e.g. optim.momentum)")
        out.append((key, value))
    return out


def matches(keys: Mapping[str, Any], where: list[tuple[str, str]]) -> bool:
    """True when every ``(key, value)`` of ``where`` holds for ``keys`` (a key it lacks: False)."""
    return all(key in keys and _same(keys[key], text) for key, text in where)


def sweep_members(name: str, results_dir: str | Path) -> set[tuple[str, int]]:
    """(identity hash, seed) of every job of sweep preset ``name``; ValueError with a did-you-mean for a name
    that is not a preset."""
    check_sweep(name, key="--sweep")
    return {(j.identity.hash, j.seed) for j in sweep_jobs(name, results_dir) if j.identity is not None}


def _same(value: Any, text: str) -> bool:
    try:
        wanted = yaml.safe_load(text)
    except yaml.YAMLError:
        wanted = text
    if isinstance(value, bool) or isinstance(wanted, bool):
        return str(value).lower() == str(wanted).lower()
    if isinstance(value, (int, float)):
        try:
            return math.isclose(float(value), float(text), rel_tol=1e-9, abs_tol=0.0)
        except ValueError:
            return False
    if isinstance(value, (list, dict)):
        return json.dumps(value) == json.dumps(wanted) or _numbers(value) == _numbers(wanted)
    return str(value) == text or (value is None and wanted is None)


def _numbers(v: Any) -> Any:
    """Numbers as floats, at any depth (``[77, 154]`` is ``[77.0, 154.0]``)."""
    if isinstance(v, list):
        return [_numbers(x) for x in v]
    if isinstance(v, dict):
        return {k: _numbers(x) for k, x in v.items()}
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
