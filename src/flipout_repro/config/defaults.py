"""Every default of a run's config, read where it is written: the schema's sections (config/schema.py) and
the group files (conf/<group>/<name>.yaml, plus the files conf/config.yaml merges into a group's package).
A run's identity is its values that differ from these (config/identity.py); a run folder's config written
before a key existed holds that key's default here (:func:`completed`).
"""
from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from omegaconf import MISSING, DictConfig, OmegaConf

from flipout_repro.config import launch, schema
from flipout_repro.config.paths import config_dir

#: A run folder's ``method.scope`` (global or layer) with ``budget=method``: the budget it is now
SCOPE_BUDGET = {"global": "global", "layer": "uniform"}
#: Config groups chosen by name (conf/<group>/<name>.yaml).
GROUPS = ("model", "dataset", "optim", "method", "schedule", "budget", "pattern")


def completed(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run folder's config with every key it lacks (it was written before the key existed) at its default,
    the behaviour from before the key existed: the schema's for its sections (``dataset``, ``loss``, ...),
    else the group's file (``model.init``, ``schedule.rounding``, ...); a method's ``scope`` with
    ``budget=method`` becomes the budget it stood for (global, or uniform for ``layer``)."""
    d = container(config)
    method = d.get("method") if isinstance(d.get("method"), dict) else {}
    budget = d.get("budget") if isinstance(d.get("budget"), dict) else {}
    if "scope" in method or budget.get("name") == "method":  # the method's own scope, now its budget
        d["method"] = {k: v for k, v in method.items() if k != "scope"}
        if budget.get("name", "method") == "method":
            d["budget"] = {**budget, "name": SCOPE_BUDGET.get(str(method.get("scope", "global")), "global")}
    for section, neutral in root_defaults().items():
        if isinstance(neutral, dict):
            d[section] = {**neutral, **(d.get(section) or {})}
    for group in GROUPS:
        node = d.get(group)
        if isinstance(node, dict) and node.get("name") is not None:
            fill = {k: v for k, v in group_defaults(group, str(node["name"])).items()
                    if k not in node and k not in ("_target_", "name") and not (isinstance(v, str) and "${" in v)}
            d[group] = {**node, **fill}
    return d



@lru_cache(maxsize=None)
def group_defaults(group: str, name: str) -> dict[str, Any]:
    """conf/<group>/<name>.yaml's values as written (interpolations unresolved) over the schema's defaults
    for the group; {} for an option that does not exist (every value of such a run counts)."""
    path = Path(config_dir()) / group / f"{name}.yaml"
    if not path.is_file():
        return {}
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    if path.read_text().lstrip().startswith("# @package _global_"):
        node = node.get(group) or {}
    node.pop("defaults", None)
    shared: dict[str, Any] = {}
    for extra in root_choices().get(f"@{group}", []):  # conf/config.yaml's ``- model_init@model``
        shared.update(OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / f"{extra}.yaml"), resolve=False))
    return {**_schema_defaults(group), **shared, **node}


@lru_cache(maxsize=None)
def method_schedule(method: str) -> str:
    """The schedule a method composes with (its yaml's ``override /schedule``), else the root default's."""
    path = Path(config_dir()) / "method" / f"{method}.yaml"
    if path.is_file():
        for entry in OmegaConf.to_container(OmegaConf.load(path), resolve=False).get("defaults") or []:
            if isinstance(entry, dict):
                for key, value in entry.items():
                    if "schedule" in key:
                        return str(value)
    return root_choices()["schedule"]


@lru_cache(maxsize=None)
def root_choices() -> dict[str, Any]:
    """conf/config.yaml's default option of each group (``schedule: periodic``, ...), and under ``@<group>``
    the files merged into a group's package (``model_init@model``: ``{"@model": ["model_init"]}``)."""
    root = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "config.yaml"), resolve=False)
    out: dict[str, Any] = {}
    for entry in root.get("defaults") or []:
        if isinstance(entry, dict):
            out.update({k: str(v) for k, v in entry.items()})
        elif isinstance(entry, str) and "@" in entry:
            name, _, package = entry.partition("@")
            out.setdefault(f"@{package}", []).append(name)
    return out


@lru_cache(maxsize=None)
def root_defaults() -> dict[str, Any]:
    """The schema's top-level defaults (schema.RunConfig), sections as dicts."""
    return _dataclass_defaults(schema.RunConfig)


def _schema_defaults(group: str) -> dict[str, Any]:
    value = root_defaults().get(group)
    return dict(value) if isinstance(value, dict) else {}


def _dataclass_defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = f.type if isinstance(f.type, type) else getattr(schema, str(f.type), None)
        if dataclasses.is_dataclass(kind):  # a section (dataset, optim, loss, ...): its fields' defaults
            out[f.name] = _dataclass_defaults(kind)
        elif f.default is not dataclasses.MISSING and f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def resolved(defaults: dict[str, Any], context: dict[str, Any], group: str) -> dict[str, Any]:
    """``defaults`` with their interpolations (``${optim.weight_decay}``, ``${paper_batches:...}``) resolved
    against the run's own config; one that cannot be resolved there is left out."""
    launch.register_resolvers()
    out = {}
    for key, value in defaults.items():
        if not (isinstance(value, str) and "${" in value):
            out[key] = value
            continue
        try:
            probe = OmegaConf.create({**{k: v for k, v in context.items() if k != group}, group: {key: value}})
            out[key] = OmegaConf.select(probe, f"{group}.{key}", throw_on_missing=True)
        except Exception:  # the run's config lacks what the default refers to
            pass
    return out


def container(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A config as plain JSON values (interpolations resolved)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return json.loads(json.dumps(dict(cfg), default=str))
