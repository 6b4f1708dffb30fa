"""What a run is: its protocol and its axes, computed once from a config, and the folder that follows.

A run's identity has two parts, each written as group names plus the values that differ from each
group's defaults (OpenLTH's rule), so that a module can move or a knob with a default can be added
without renaming any run; changing a default is a deliberate change of :data:`FORMAT`:

- the **protocol**: how the network is trained: model, data set and its preprocessing, optimiser and lr
  schedule, loss, epochs, batch size, precision, initialisation (``model.init_from_sha256``), ...;
- the **axes** a study compares: the method and its knobs, the pruning schedule where it is not the
  method's own, the target sparsity, the layer budget, the pattern, and the seed.

Runs compare only within one protocol. The run folder, the sweep status, the report and the matching
of published numbers all ask :func:`identity` (of a composed config) or :func:`stored_identity` (of a run
folder's config.yaml or summary.json).

    <results_dir>/runs/<model>-<dataset>/<method>/sparsity_<s>/<hash8>/seed_<n>/

``<hash8>`` hashes protocol and axes without the seed: runs that differ in anything but the seed never
share a folder; the seeds of one setting sit side by side.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from omegaconf import MISSING, DictConfig

from flipout_repro.config.defaults import (GROUPS, completed, container, group_defaults, method_schedule, resolved,
                                          root_defaults)
from flipout_repro.rundir import RunDir, format_sparsity, path_name

#: The identity rule's version: run folders written under another one are moved (config/migrate.py).
FORMAT = 2

#: Keys that do not change what a run computes: not part of its identity (the seed is its own folder).
NOT_IDENTITY = frozenset({
    "seed", "device", "results_dir", "progress", "eval_batch_size", "resume", "compile", "channels_last",
    "deterministic", "quantize", "quantization",
    "logger",  # where the metrics go besides TensorBoard
    "on_collapse",  # stop or warn: a run that completes computes the same either way
    "dataset.root", "dataset.download", "dataset.workers",  # where the data lies, how many loaders read it
    "dataset.verify",  # a check of the files before the run
    "model.init_from",  # where the start weights lie; their content is model.init_from_sha256
    "parent.run",  # where the parent lies; its identity is parent.hash
})
#: The axes a study compares (besides the seed); everything else is the protocol. ``parent`` (the
#: identity hash of the run a control derives from) is among them only for such runs.
AXES = ("method", "schedule", "sparsity", "budget", "pattern", "parent")
#: Axes that tell the points of one setting apart (a figure's series, a table's row): left out of
#: :attr:`Identity.setting_hash`.
POINT_AXES = ("sparsity", "parent")
#: Protocol values always written out, default or not: what a reader of a table needs to see.
ALWAYS = ("epochs", "batch_size", "precision")
_ABSENT = object()


@dataclass(frozen=True)
class Identity:
    """A run's protocol and axes (plain JSON values), its seed, and the hashes and folder they give."""

    protocol: dict[str, Any]
    axes: dict[str, Any]
    seed: int

    @property
    def hash(self) -> str:
        """Protocol and axes without the seed: the ``<hash8>`` of the run folder."""
        return _hash({"protocol": self.protocol, "axes": self.axes})

    @property
    def protocol_hash(self) -> str:
        """The protocol alone: runs with equal protocol hashes may be compared."""
        return _hash(self.protocol)

    @property
    def setting_hash(self) -> str:
        """Protocol and axes without sparsity, parent and seed: one method setting across its sparsity levels
    (a control of one method's runs across their sparsities)."""
        return _hash({"protocol": self.protocol, "axes": {k: v for k, v in self.axes.items() if k not in POINT_AXES}})

    def folder(self, results_dir: str | Path) -> Path:
        """``<results_dir>/runs/<model>-<dataset>/<method>/sparsity_<s>/<hash8>/seed_<n>``."""
        p, a = self.protocol, self.axes
        names = [path_name(v, k) for k, v in (("model.name", p["model"]["name"]), ("dataset.name", p["dataset"]["name"]),
                                              ("method.name", a["method"]["name"]))]
        return (Path(results_dir) / "runs" / f"{names[0]}-{names[1]}" / names[2]
                / f"sparsity_{format_sparsity(a['sparsity'])}" / self.hash / f"seed_{int(self.seed)}")

    def flat(self) -> dict[str, Any]:
        """``{"protocol.optim.lr": 0.05, "axes.method.name": "flipout", ...}``: every value by its key."""
        return {**flatten(self.protocol, "protocol."), **flatten(self.axes, "axes.")}

    def protocol_label(self) -> str:
        """``lenet300_100 on mnist5k, 40 epochs, batch 128, fp32, optim.lr=0.05``: the protocol in words."""
        p = self.protocol
        head = [f"{p['model']['name']} on {p['dataset']['name']}", f"{p['epochs']} epochs", f"batch {p['batch_size']}",
                str(p["precision"])]
        rest = {k: v for k, v in flatten(p).items()
                if k not in ("model.name", "dataset.name", *ALWAYS) and not (k == "optim.name" and v == "sgd")}
        return ", ".join(head + [f"{key_words(k)}={_text(v)}" for k, v in rest.items()])

    def axes_label(self, with_sparsity: bool = False) -> str:
        """``flipout, budget=erk, method.p=3``: the method and what sets it apart, in words."""
        a = self.axes
        parts = [a["method"]["name"]]
        parts += [f"method.{k}={_text(v)}" for k, v in a["method"].items() if k != "name"]
        if a["budget"] != {"name": "global"}:
            parts += [f"budget={a['budget']['name']}"] + [f"budget.{k}={_text(v)}" for k, v in a["budget"].items()
                                                          if k != "name"]
        if a["pattern"] != {"name": "unstructured"}:
            parts += [f"pattern={a['pattern']['name']}"] + [f"pattern.{k}={_text(v)}" for k, v in a["pattern"].items()
                                                            if k != "name"]
        if "schedule" in a:
            parts += [f"schedule={a['schedule']['name']}"] + [f"schedule.{k}={_text(v)}" for k, v in
                                                              a["schedule"].items() if k != "name"]
        if with_sparsity:
            parts.append(f"sparsity={format_sparsity(a['sparsity'])}")
        return ", ".join(parts)


def differences(a: Identity, b: Identity, part: str = "protocol") -> list[str]:
    """The keys (``optim.lr``, ``epochs``) whose values differ between two identities' ``part``."""
    fa, fb = flatten(getattr(a, part)), flatten(getattr(b, part))
    return sorted(k for k in set(fa) | set(fb) if fa.get(k, _ABSENT) != fb.get(k, _ABSENT))


def identity(cfg: DictConfig | Mapping[str, Any]) -> Identity:
    """The identity of a prepared config (config.targets.prepare: a method that never prunes has sparsity
    0) whose precision is pinned (config.precision.pin_precision; ``auto`` is read as fp32, what a stored
    ``auto`` computed in). Keys it lacks hold their defaults (config.defaults.completed)."""
    d = completed(cfg)
    protocol: dict[str, Any] = {}
    for group in ("model", "dataset", "optim"):
        protocol[group] = _group_part(d, group)
    for key, value in d.items():
        if key in GROUPS or key in AXES or key in NOT_IDENTITY or key in protocol:
            continue
        if isinstance(value, dict):  # a section without groups (loss): its values that differ from the schema's
            part = _diff(value, root_defaults().get(key) or {}, key)
            if part:
                protocol[key] = part
        elif key in ALWAYS or _canon(value) != _canon(root_defaults().get(key, MISSING)):
            protocol[key] = _canon(value)
    protocol["precision"] = "bf16" if d.get("precision") == "bf16" else "fp32"
    for key in ALWAYS:
        protocol.setdefault(key, _canon(root_defaults()[key]))
    return Identity(protocol=dict(sorted(protocol.items())), axes=_axes(d), seed=int(d.get("seed", 0)))


def stored_identity(config: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> Identity:
    """The identity of a run folder's config (config.yaml, or summary.json's ``config``), :func:`completed`;
    a run whose config says ``precision: auto`` but whose summary says bf16 is a bf16 run."""
    d = container(config)
    if d.get("precision") == "auto" and (summary or {}).get("precision") == "bf16":
        d["precision"] = "bf16"
    return identity(d)


def run_dir(cfg: DictConfig) -> RunDir:
    """The folder of the run a prepared, pinned config describes."""
    return RunDir(identity(cfg).folder(cfg.results_dir))


def _axes(d: dict[str, Any]) -> dict[str, Any]:
    method = d.get("method") or {}
    axes: dict[str, Any] = {"method": _group_part(d, "method")}
    own = method_schedule(str(method.get("name")))
    schedule = _group_part(d, "schedule")
    if schedule != {"name": own}:
        axes["schedule"] = schedule
    axes["sparsity"] = _canon(float(d.get("sparsity", 0.0)))
    axes["budget"] = _group_part(d, "budget")
    axes["pattern"] = _group_part(d, "pattern")
    parent = (d.get("parent") or {}).get("hash")
    if parent is not None:
        axes["parent"] = {"hash": str(parent)}
    return axes


def _group_part(d: dict[str, Any], group: str, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{"name": <option>, <knob>: <value>, ...}``: a group's option and the values that differ from it."""
    node = d.get(group) or {}
    name = node.get("name")
    defaults = resolved(group_defaults(group, str(name)), d, group)
    body = {k: v for k, v in node.items() if k not in drop}
    return {"name": name, **_diff(body, defaults, group)}


def _diff(node: dict[str, Any], defaults: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in node.items():
        if key in ("_target_", "name", "defaults") or f"{prefix}.{key}" in NOT_IDENTITY:
            continue
        if key not in defaults:
            if value is not None:  # an unset knob that the defaults do not know says nothing
                out[key] = _canon(value)
        elif _canon(value) != _canon(defaults[key]):
            out[key] = _canon(value)
    return dict(sorted(out.items()))


def _canon(value: Any) -> Any:
    """One spelling per value: 1 and 1.0 are 1, tuples are lists, mappings are sorted."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in sorted(value.items())}
    return str(value)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def key_words(key: str) -> str:
    """A flattened key as a user writes it on the command line: a group's name is the group
    (``optim.name`` -> ``optim``, as in ``optim=adamw``); any other key unchanged (``optim.lr``)."""
    group, dot, rest = key.partition(".")
    return group if dot and rest == "name" else key


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]
