"""``model.init_from``: start a run from existing weights instead of a fresh initialisation.

The classic train, prune, fine-tune baseline (train dense, then prune the trained network and fine-tune
it), and the users who bring their own checkpoint, need a run that starts from given weights.
``model.init_from`` is a finished run's folder (its ``model.pt``, written when the run finished) or a
state dict file (``torch.save(model.state_dict(), path)``; also a dict holding one under ``state_dict``,
``model_state_dict`` or ``model``, with DataParallel's ``module.`` or torch.compile's ``_orig_mod.``
prefix). The weights are loaded after the model is built (``model.init`` then has no effect); the masks
start full, as in any run, so pruning and fine-tuning follow the configured method and schedule.

The run hash depends on the weights' CONTENT, not on where they lie (our choice): :func:`pin_init_from`
records the resolved file as ``model.init_from`` (not part of the identity: config/identity.py) and its SHA-256 as
``model.init_from_sha256`` (hashed). The same weights reached by two paths are one run; a file changed in
place is a new run. ``init_from: null`` (the default) adds nothing to the hash.

Every check runs before the run folder exists: a path that is missing, a run folder without model.pt,
a file that holds no state dict, and (once the model is built, :func:`load_init_weights`) missing or
extra keys and shape mismatches, each named with its fix.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from flipout_repro.errors import ConfigError

KEY = "model.init_from"
_NESTED = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")


def resolve_init_from(value: Any) -> Path:
    """The weights file ``model.init_from`` names (a run folder -> its model.pt), or ConfigError."""
    if not isinstance(value, str) or not value:
        raise ConfigError(KEY, value, "is not a path", f"use {KEY}=results/runs/<...>/seed_0 (a finished run "
                          f"folder) or {KEY}=weights.pt (a state dict file), or {KEY}=null")
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(KEY, value, "does not exist", f"give a finished run folder or a state dict file "
                          f"(from {Path.cwd()}), e.g. {KEY}=results/runs/lenet300_100-mnist5k/dense/sparsity_0/"
                          "<hash>/seed_0")
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise ConfigError(KEY, value, "is a folder without model.pt (a run writes it when it finishes)",
                              "point at a finished run's folder, or at a state dict file")
        path = path / "model.pt"
    return path.resolve()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pin_init_from(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``model.init_from`` resolved to its weights file and ``model.init_from_sha256`` set
    (the hashed value); ``cfg`` itself when ``model.init_from`` is unset. Raises ConfigError first."""
    value = cfg.model.get("init_from")
    if value is None:
        return cfg
    path = resolve_init_from(value)
    read_state_dict(path, value)  # a file that is no state dict fails now, not after the data set loads
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.model.init_from = str(path)
    cfg.model.init_from_sha256 = file_sha256(path)
    return cfg


def read_state_dict(path: Path, shown: Any = None) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (CPU tensors; nested and prefixed forms unwrapped), or ConfigError."""
    shown = path if shown is None else shown
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one that needs arbitrary code to load
        raise ConfigError(KEY, shown, f"cannot be read as a state dict ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]})", "save it with torch.save(model.state_dict(), "
                          "path)") from exc
    for key in _NESTED:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(KEY, shown, "holds no state dict (a dict of tensors)", "save it with "
                          "torch.save(model.state_dict(), path)")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


@torch.no_grad()
def load_init_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Copy the weights of ``path`` into ``model``; ConfigError naming the mismatching keys otherwise."""
    state = read_state_dict(Path(path))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    # a float weight from an integer or boolean tensor would be truncated copies (int64 zeros), not weights
    kinds = [f"{k} {str(state[k].dtype).removeprefix('torch.')} vs {str(own[k].dtype).removeprefix('torch.')}"
             for k in own if k in state and own[k].is_floating_point() and not state[k].is_floating_point()]
    if missing or extra or shapes or kinds:
        parts = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                 for label, items in (("missing", missing), ("unexpected", extra),
                                      ("shape (file vs model)", shapes),
                                      ("not floating point (file vs model)", kinds)) if items]
        raise ConfigError(KEY, str(path), "does not fit the configured model (" + "; ".join(parts) + ")",
                          "use weights of the same model= and dataset= (channels, classes, image size)")
    model.load_state_dict(state)
