"""Runs derived from runs: the parent checked and pinned before anything is written, the child's start
(mask, weights, position in the schedule) taken from it when the child starts.

``parent.run`` names the parent's folder. :func:`pin_parent` checks it (a finished, completed run of the
same protocol, holding what the child takes) and fills in what the child inherits: a control's seed must
be its parent's; its ``sparsity`` (the parent's target), ``method.of`` (the parent's setting in words)
and ``parent.hash`` (the parent's identity: part of the control's) are written from the parent. An IMP
level's parent is the level before (set by the chain, run.py), and its identity needs none of it.

:func:`start` sets the child's mask and weights when it starts training (a resumed child has them in
its checkpoint) and writes ``parent.json``: the parent's identity and numbers, kept so that the child's
report never needs the parent again.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from flipout_repro.config.defaults import group_defaults
from flipout_repro.config.identity import Identity, differences, flatten, identity, stored_identity
from flipout_repro.config.validate import instantiate
from flipout_repro.errors import ConfigError
from flipout_repro.methods.derived import CONTROL_TAKES, REWIND, Control, Derived, IMP
from flipout_repro.rundir import DamagedRun, RunDir, load_tensors, read_summary
from flipout_repro.sparsity.budgets import Budget
from flipout_repro.sparsity.masking import Masks, prune_to, set_masks
from flipout_repro.training.build import Built, build_model
from flipout_repro.training.lr_schedule import milestone_epochs
from flipout_repro.training.trainer import TrainState

log = logging.getLogger("flipout_repro")
KEY = "parent.run"


def pin_parent(cfg: DictConfig, method: Any) -> DictConfig:
    """``cfg`` with what a derived run inherits from ``parent.run`` filled in; ConfigError (one line: the
    key, the value, the fix) for a parent that cannot serve, before anything is written."""
    run = OmegaConf.select(cfg, "parent.run")
    derived = isinstance(method, Derived)
    if derived:
        cfg = _no_schedule(cfg)
    if run is None:
        if isinstance(method, Control):
            raise ConfigError(KEY, None, "is needed: method=control controls a finished pruned run",
                              f"add {KEY}=<its folder, results/runs/.../seed_<n>>, or run flipout-controls <folder>")
        if OmegaConf.select(cfg, "parent.hash") is not None:
            raise ConfigError("parent.hash", cfg.parent.hash, "is written from parent.run", "drop parent.hash")
        return cfg
    if not derived:
        raise ConfigError(KEY, run, f"is for runs derived from a run; method={cfg.method.name} starts from none",
                          "drop parent.run, or use method=control")
    folder = RunDir(Path(str(run)).expanduser().resolve())
    summary = _finished(folder, run)
    mine = identity(cfg)
    theirs = stored_identity(summary["config"], summary)
    other = differences(mine, theirs)
    if other:
        shown = ", ".join(f"{k} ({_value(theirs, k)} there)" for k in other[:4])
        raise ConfigError(KEY, run, f"was trained under another protocol: {shown}",
                          "a derived run keeps its parent's protocol: flipout-controls <folder> composes it")
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.parent.run = str(folder.path)
    if isinstance(method, Control):
        _check_control_parent(cfg, method, folder, summary, theirs, run)
        target = summary["achieved_sparsity"] if summary.get("sparsity_is_outcome") else summary["target_sparsity"]
        cfg.sparsity = float(target)
        cfg.method.of = theirs.axes_label().replace(", ", "; ")  # one knob of the control's label
        cfg.parent.hash = theirs.hash
    else:
        _check_level_parent(cfg, method, folder, summary, mine, theirs, run)
        cfg.parent.hash = None  # a level's identity needs none (methods/derived.py)
    return cfg


def _no_schedule(cfg: DictConfig) -> DictConfig:
    """A derived run has no prune events: its schedule is ``none`` as conf/schedule/none.yaml writes it
    (a knob such as ``schedule.rounding`` set by an experiment changes nothing, and no run's identity)."""
    if cfg.schedule.name != "none":
        raise ConfigError("schedule", cfg.schedule.name, f"does not apply to method={cfg.method.name}, whose mask is"
                          " set from its parent at the start", "drop schedule= (its own is none)")
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.schedule = group_defaults("schedule", "none")
    return cfg


def _finished(folder: RunDir, run: Any) -> dict[str, Any]:
    if not folder.path.is_dir():
        raise ConfigError(KEY, run, "does not exist", "give a finished run's folder (results/runs/.../seed_<n>);"
                          " flipout-report lists them")
    if not folder.summary.is_file():
        raise ConfigError(KEY, run, "is not a finished run (no summary.json)",
                          "let it finish (run its command again to resume it), or give another run's folder")
    try:
        summary = read_summary(folder)
    except DamagedRun as exc:
        raise ConfigError(KEY, run, f"has a summary that cannot be read ({exc})", "give another run's folder") \
            from exc
    if summary.get("status") != "completed" or not isinstance(summary.get("config"), dict):
        raise ConfigError(KEY, run, f"did not complete (status {summary.get('status')!r}:"
                          f" {summary.get('error', 'no config recorded')})", "give a completed run's folder")
    for name in ("masks.pt", "model.pt"):
        if not (folder.path / name).is_file():
            raise ConfigError(KEY, run, f"lacks {name} (a finished run writes it)", "give a finished run's folder")
    return summary


def _check_control_parent(cfg: DictConfig, method: Control, folder: RunDir, summary: dict, theirs: Identity,
                          run: Any) -> None:
    if theirs.axes["method"]["name"] == "control":
        raise ConfigError(KEY, run, "is a control itself", "give the run it controls (its parent.run)")
    if not summary.get("achieved_sparsity"):
        raise ConfigError(KEY, run, f"is dense (method={theirs.axes['method']['name']}, sparsity 0): it has no mask"
                          " to control", "give a pruned run's folder")
    if int(cfg.seed) != int(summary["seed"]):
        raise ConfigError("seed", cfg.seed, f"differs from its parent's seed ({summary['seed']}); a control trains"
                          " with its parent's seed", f"use seed={summary['seed']}")
    if method.needs_scores and not prunes_at_init(summary["config"]):
        raise ConfigError("method.kind", "invert", f"needs a parent that pruned at initialisation (one_shot at"
                          f" epoch 0); {KEY} ({theirs.axes_label()}) pruned during training",
                          "use method.kind=shuffle, reinit or random_budget")


def _check_level_parent(cfg: DictConfig, method: IMP, folder: RunDir, summary: dict, mine: Identity,
                        theirs: Identity, run: Any) -> None:
    other = differences(mine, theirs, "axes")
    if [k for k in other if not k.startswith("sparsity")]:
        raise ConfigError(KEY, run, f"is not a level of this chain (it differs in {', '.join(other)})",
                          "a level's parent is the level before, which the chain sets")
    if float(summary["target_sparsity"]) >= float(cfg.sparsity):
        raise ConfigError(KEY, run, f"is at sparsity {summary['target_sparsity']}, not below this level's"
                          f" {cfg.sparsity}", "a level's parent is the level before, which the chain sets")
    k = method.start_epoch_of_parent
    if k is not None and not folder.state_file(k).is_file():
        raise ConfigError(KEY, run, f"did not record the state at epoch {k} that rewind={method.rewind} takes"
                          f" ({folder.state_file(k)})", "run the chain again from its level 0: delete the parent's"
                          " folder and run the same command")


def prunes_at_init(config: dict[str, Any]) -> bool:
    """Whether the run a stored config describes pruned once, at initialisation (``invert`` needs it)."""
    schedule = config.get("schedule") or {}
    return schedule.get("name") == "one_shot" and float(schedule.get("epoch", -1)) == 0


def _value(ident: Identity, key: str) -> Any:
    return flatten(ident.protocol).get(key, "unset")


# --- the child's start ------------------------------------------------------------------------------


def start(cfg: DictConfig, b: Built, run_dir: RunDir) -> tuple[TrainState, dict[str, Any], dict[str, Any]]:
    """Set a derived run's start mask and weights from its parent. Returns the state training starts
    from, the prune record of the start mask (metrics.jsonl), and what ``parent.json`` keeps."""
    method, masks = b.method, b.masks
    parent = RunDir(Path(str(cfg.parent.run)))
    summary = read_summary(parent)
    theirs = stored_identity(summary["config"], summary)
    parent_masks = _masks_of(parent, masks)
    state = TrainState()
    if isinstance(method, Control):
        gen = torch.Generator(device=masks.values[0].device)
        gen.manual_seed(_derived_seed(int(cfg.seed), method.kind))
        scores = _parent_scores(summary["config"], b, cfg) if method.needs_scores else None
        new = method.start_mask(parent_masks, gen, scores)
        if scores is not None:
            _check_scores(scores, parent_masks)
        if method.fresh_weights:
            _reinitialise(cfg, b, _derived_seed(int(cfg.seed), "weights"))
        set_masks(masks, new)
        took = CONTROL_TAKES[method.kind]
    else:
        assert isinstance(method, IMP)
        state = _level_start(cfg, b, parent, method)
        trained = load_tensors(parent.model)
        scores = [trained[n].abs() for n in masks.names]
        set_masks(masks, parent_masks)
        prune_to([s.to(m.device) for s, m in zip(scores, masks.values)], masks, float(cfg.sparsity),
                 Budget(cfg.budget.name, bool(cfg.budget.dense_first), bool(cfg.budget.dense_last)))
        took = f"the largest trained weights of the level before; {REWIND[method.rewind]}"
    masks.active = True
    masks.apply_to_weights()
    kept = dict(zip(masks.names, masks.nonzero_counts()))
    record = {"type": "prune", "epoch": state.epoch, "step": state.step, "sparsity_before": 0.0,
              "sparsity": masks.sparsity(), "target": float(cfg.sparsity), "removed": masks.total() - sum(kept.values()),
              "test_acc_before": None, "kept": kept, "from_parent": str(parent.path)}
    facts = {"run_dir": str(parent.path), "hash": theirs.hash, "seed": int(summary["seed"]),
             "method": theirs.axes["method"]["name"], "setting_label": theirs.axes_label(),
             "setting": theirs.setting_hash, "target_sparsity": summary.get("target_sparsity"),
             "achieved_sparsity": summary.get("achieved_sparsity"), "final_test_acc": summary.get("final_test_acc"),
             "train_macs_fraction": summary.get("train_macs_fraction"), "took": took, "start_step": state.step}
    if isinstance(method, IMP):
        facts["level"] = int((summary.get("imp") or {}).get("level", 0)) + 1
    log.info("derived from %s: %s; sparsity %.6g, starting at epoch %d", parent.path, took, masks.sparsity(),
             state.epoch)
    return state, record, facts


def _masks_of(parent: RunDir, masks: Masks) -> list[torch.Tensor]:
    saved = load_tensors(parent.masks)
    if list(saved.get("names", [])) != masks.names:
        raise ConfigError(KEY, str(parent.path), "holds masks of other layers than this model's",
                          "give a run of the same model")
    return [m.to(v.device, v.dtype) for m, v in zip(saved["masks"], masks.values)]


def _level_start(cfg: DictConfig, b: Built, parent: RunDir, method: IMP) -> TrainState:
    """An IMP level's weights and position: the parent's kept state (lottery, weights), or its trained
    weights at the start (lr) or at the start of the schedule's last epochs (finetune)."""
    k = method.start_epoch_of_parent
    if k is not None:
        snap = load_tensors(parent.state_file(k))
        b.model.load_state_dict(snap["model"])
        b.lr_scheduler.load_state_dict(snap["lr_scheduler"])
        for group, lr in zip(b.optimizer.param_groups, b.lr_scheduler.get_last_lr()):
            group["lr"] = lr
        b.generator.set_state(snap["generator"].to(b.generator.get_state().device))
        return TrainState(epoch=int(snap["state"]["epoch"]), step=int(snap["state"]["step"]))
    b.model.load_state_dict(load_tensors(parent.model))
    if method.rewind == "lr":
        return TrainState()
    first = int(cfg.epochs) - finetune_epochs(cfg, method)
    spe = b.data.steps_per_epoch(int(cfg.batch_size))
    per_step = getattr(b.lr_scheduler, "per_step", False)  # a rate set every step (optim.schedule=triangle)
    with warnings.catch_warnings():  # stepping the schedule before any optimizer step is the point here
        warnings.simplefilter("ignore")
        for _ in range(first * spe if per_step else first):
            b.lr_scheduler.step()
    return TrainState(epoch=first, step=first * spe)


def finetune_epochs(cfg: DictConfig, method: IMP) -> int:
    """The epochs a finetune level trains: ``method.finetune_epochs``, or those after the last lr milestone."""
    if method.finetune_epochs is not None:
        return method.finetune_epochs
    return int(cfg.epochs) - (last_milestone(cfg) or 0)


def last_milestone(cfg: DictConfig) -> int | None:
    """The epoch from which a step schedule's learning rate is final (its warm-up and last milestone
    behind it); None for a schedule that keeps changing (cosine)."""
    o = cfg.optim
    if o.schedule != "step":
        return None
    ms = milestone_epochs(o.milestones, o.milestones_of, cfg.epochs) if o.milestones else []
    return max([int(o.warmup_epochs), *[m for m in ms if m < int(cfg.epochs)]])


def _parent_scores(config: dict[str, Any], b: Built, cfg: DictConfig) -> list[torch.Tensor]:
    """The parent method's scores at initialisation, computed again on a copy of the child's initial
    weights (the parent's: same protocol, same seed) with a copy of its data generator."""
    pcfg = OmegaConf.create(config)
    pm = instantiate(pcfg.method, "method")
    model = copy.deepcopy(b.model)
    masks = Masks.for_model(model)
    pm.bind(model, masks)
    pm.use_budget(Budget(pcfg.budget.name, bool(pcfg.budget.dense_first), bool(pcfg.budget.dense_last)))
    gen = torch.Generator(device=b.generator.device)
    gen.set_state(b.generator.get_state())
    spe = b.data.steps_per_epoch(int(cfg.batch_size))
    with torch.random.fork_rng(devices=[]):
        pm.on_train_start(b.data.train_batches(int(cfg.batch_size), gen, b.data.epoch_order(gen)),
                          float(pcfg.sparsity), int(pcfg.epochs), spe)
        return [s.detach() for s in pm.scores(model)]


def _check_scores(scores: list[torch.Tensor], parent: list[torch.Tensor]) -> None:
    """Warn when the recomputed scores do not rank the parent's own mask on top in every layer."""
    off = 0
    for s, m in zip(scores, parent):
        kept = int(m.sum())
        top = torch.zeros(m.numel(), device=m.device)
        top[torch.topk(s.flatten().float(), kept).indices] = 1
        off += int((top != m.flatten().float()).sum())
    if off:
        log.warning("invert: the parent's scores, computed again, rank %d mask entries differently from its"
                    " mask (ties, or a method whose scoring draws numbers): the control uses the recomputed ones",
                    off)


def _reinitialise(cfg: DictConfig, b: Built, seed: int) -> None:
    """Fresh weights of the model's init scheme, drawn from ``seed`` (the run's other draws unchanged)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_model(cfg.model, b.data.in_channels, cfg.dataset.num_classes, b.data.image_size, "cpu")
    b.model.load_state_dict(fresh.state_dict())


def _derived_seed(seed: int, what: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{what}".encode()).digest()[:4], "little")
