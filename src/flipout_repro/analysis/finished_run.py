"""Reload a finished run from its folder: config, model with its final weights, masks and data.

The model is rebuilt from the run's config.yaml (by training.build, as a run builds it), its weights come from
model.pt (written when the run finished; runs of versions before it: checkpoint.pt, the last epoch) and
its masks from masks.pt, all read with ``torch.load(weights_only=True)``. Every problem is a
:class:`RunFolderError` whose message names the path and a fix that works: a finished run is skipped
whatever ``resume`` says, so a damaged one is redone by deleting its summary.json and running its
command again (it resumes from checkpoint.pt when that is there, else it trains anew).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from flipout_repro.errors import ConfigError
from flipout_repro.data import DataError
from flipout_repro.sparsity.masking import Masks
from flipout_repro.rundir import DamagedRun, RunDir, load_tensors
from flipout_repro.rundir import load_summary, read_summary as rundir_read_summary
from flipout_repro.config.defaults import completed
from flipout_repro.config.schema import RunConfig
from flipout_repro.training.build import build_model, load_data


class RunFolderError(RuntimeError):
    """A folder that is not a usable run; ``str(err)`` names the path and the fix."""


@dataclass
class LoadedRun:
    """A finished run, rebuilt on one device."""

    run: RunDir
    cfg: DictConfig
    summary: dict[str, Any]
    model: torch.nn.Module
    masks: Masks
    data: Any  # data.DataSet (in memory or streamed), loaded by :func:`load_run` when asked

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image."""
        ds = self.cfg.dataset
        return (int(ds.in_channels), int(ds.image_size), int(ds.image_size))


def redo(run: RunDir) -> str:
    """The fix for a finished run whose files are damaged or gone."""
    return (f"delete {run.summary} and run the flipout-train command that made the run again (its settings"
            f" are in {run.config}): it resumes from checkpoint.pt if that is there, else trains the run anew")


def failed_fix(summary: dict[str, Any]) -> str:
    """What to change for a failed run (the same command fails the same way again)."""
    reason = summary.get("stop_reason")
    if reason == "layer_collapse":
        return ("Train it on with on_collapse=warn, or choose a lower sparsity or budget=erk/uniform so that no"
                " layer loses every weight")
    if reason == "sparsity_not_reached":
        return "Give it a schedule whose prune events reach the target (the method's own), then resume=false"
    return ("It diverged: the same settings diverge again; lower optim.lr (or use precision=fp32), then"
            " train it with resume=false")


def check_run_folder(path: str | Path, need_summary: bool = True) -> RunDir:
    """The RunDir of ``path`` once it holds config.yaml, masks.pt, model.pt or checkpoint.pt (and
    summary.json)."""
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise RunFolderError(f"{run.path} is not a folder: pass a run folder, e.g. "
                             "results/runs/<model>-<dataset>/<method>/sparsity_<s>/<hash8>/seed_<n>")
    if not run.config.exists():
        raise RunFolderError(f"{run.path} is not a run folder (no config.yaml): pass the seed_<n> folder "
                             "of a run, e.g. results/runs/<model>-<dataset>/<method>/sparsity_<s>/<hash8>/seed_0")
    if need_summary and not run.summary.exists():
        raise RunFolderError(f"{run.path} has no summary.json, so the run has not finished: run the same "
                             "flipout-train command again to finish it, then retry")
    if not run.model.exists() and not run.checkpoint.exists():
        raise RunFolderError(f"{run.path} has neither model.pt nor checkpoint.pt: the final weights are gone;"
                             f" {redo(run)}")
    if not run.masks.exists():
        raise RunFolderError(f"{run.masks} is missing: {redo(run)}")
    return run


def read_summary(run: RunDir) -> dict[str, Any]:
    """summary.json as a dict, or {} when the run has none."""
    if not run.summary.exists():
        return {}
    try:
        summary = rundir_read_summary(run)
        load_summary(run)  # its fields as Summary defines them (values read back are untrusted)
        return summary
    except (OSError, DamagedRun) as exc:
        raise RunFolderError(str(exc)) from exc


def run_config(run: RunDir) -> DictConfig:
    """The run's config.yaml, with the keys it lacks at their defaults (config/defaults.py), through the
    schema."""
    try:
        stored = completed(OmegaConf.to_container(OmegaConf.load(run.config)))
        return OmegaConf.merge(OmegaConf.structured(RunConfig), stored)
    except Exception as exc:
        raise RunFolderError(f"{run.config} cannot be parsed ({exc}): the run folder is damaged; delete"
                             f" {run.path} and run the flipout-train command that made it again") from exc


def _torch_load(path: Path) -> Any:
    try:
        return load_tensors(path)
    except ValueError as exc:  # truncated file, not a torch file, unsafe content
        raise RunFolderError(f"{path} {exc}: {redo(RunDir(path.parent))}") from exc


def load_run(path: str | Path, device: str | torch.device = "cpu", with_data: bool = True,
             data_root: str | None = None, need_summary: bool = True) -> LoadedRun:
    """Rebuild the run in ``path`` on ``device``: model with final weights, masks, and (optionally) data.

    ``data_root`` replaces ``dataset.root`` of the run's config (data sets are found relative to the
    current folder otherwise).
    """
    run = check_run_folder(path, need_summary)
    summary = read_summary(run)
    if summary.get("status") == "failed":
        raise RunFolderError(f"{run.path} is a failed run ({summary.get('error')}): it has no final network to"
                             f" use. {failed_fix(summary)}")
    cfg = run_config(run)
    if data_root is not None:
        cfg.dataset.root = data_root
    device = torch.device(device)
    ds = cfg.dataset
    try:
        model = build_model(cfg.model, ds.in_channels, ds.num_classes, ds.image_size, device)
    except (ConfigError, AttributeError) as exc:
        raise RunFolderError(f"{run.config}: the model cannot be rebuilt ({exc})") from exc
    weights = run.model if run.model.exists() else run.checkpoint
    state = _torch_load(weights)
    saved_masks = _torch_load(run.masks)
    try:
        model.load_state_dict(state if weights == run.model else state["model"])
        masks = Masks.for_model(model)
        masks.load_state_dict(saved_masks)
    except Exception as exc:  # weights or masks of another model
        raise RunFolderError(f"{run.path}: {weights.name} or masks.pt does not match config.yaml "
                             f"({type(exc).__name__}: {str(exc)[:200]}); {redo(run)}") from exc
    masks.apply_to_weights()  # the checkpoint's pruned weights are zero already; this makes it certain
    data = None
    if with_data:
        try:
            data = load_data(cfg, device)
        except (DataError, ConfigError) as exc:
            raise RunFolderError(f"the data of {run.path} cannot be loaded: {exc} (or pass --data-root "
                                 "DIR)") from exc
    return LoadedRun(run, cfg, summary, model, masks, data)
