"""run(cfg) -> summary: build everything, train, write the results; skip finished runs, resume others.

Order matters for the promise that bad input touches nothing: the config is validated, the data set is
loaded and the model built before the run folder is created.
"""
from __future__ import annotations

import logging
import platform
import random
import time
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import flipout_repro
from flipout_repro import data as data_mod
from flipout_repro.config import ConfigError, effective_sparsity, instantiate, validate
from flipout_repro.masking import Masks
from flipout_repro.report import write_run_curve
from flipout_repro.results import (MetricsLog, RunDir, atomic_torch_save, atomic_write_text, config_hash,
                                   format_sparsity, git_sha, truncate_metrics, write_json)
from flipout_repro.train import Trainer, TrainState

log = logging.getLogger("flipout_repro")


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when present, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(cfg: DictConfig, device: torch.device) -> data_mod.TensorData:
    """The configured data set on ``device``, checked against the config's image shape."""
    ds = cfg.dataset
    data = data_mod.load(ds.name, ds.root, ds.download, device, list(ds.mean), list(ds.std),
                         ds.crop_padding, ds.flip)
    if data.in_channels != ds.in_channels or data.image_size != ds.image_size:
        raise ConfigError("dataset", ds.name, f"files hold {data.in_channels}x{data.image_size}x"
                          f"{data.image_size} images, the config says {ds.in_channels}x{ds.image_size}",
                          "fix dataset.in_channels/image_size")
    return data


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with momentum and coupled weight decay; LR x gamma at milestones scaled to ``epochs``.

    ``optim.milestones`` are epochs of a ``optim.milestones_of``-epoch run (the paper: 150 and 250 of
    350) and are scaled to ``epochs``, so a short run keeps the paper's shape.
    """
    o = cfg.optim
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                          nesterov=o.nesterov)
    milestones = [max(1, int(m * cfg.epochs / o.milestones_of + 0.5)) for m in o.milestones]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=o.gamma)
    return opt, sched


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train one configured run and return its summary (the existing one if it already finished)."""
    validate(cfg)
    target = effective_sparsity(cfg)
    if target != cfg.sparsity:
        log.info("method=%s prunes nothing: sparsity=%s ignored, target 0", cfg.method.name, cfg.sparsity)
        cfg = cfg.copy()
        OmegaConf.set_struct(cfg, False)
        cfg.sparsity = 0.0
    run_dir = RunDir.for_config(cfg, target)
    if run_dir.finished():
        log.info("already finished, skipped: %s", run_dir.path)
        import json
        return json.loads(run_dir.summary.read_text())

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = load_data(cfg, device)
    model = instantiate(cfg.model, "model", in_channels=data.in_channels,
                        num_classes=cfg.dataset.num_classes, input_size=data.image_size).to(device)
    masks = Masks.for_model(model)
    method = instantiate(cfg.method, "method")
    method.bind(model, masks)
    schedule = instantiate(cfg.schedule, "schedule")
    spe = data.steps_per_epoch(cfg.batch_size)
    events = schedule.events(target, cfg.epochs, spe) if method.prunes else []
    optimizer, lr_scheduler = build_optimizer(cfg, model)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)

    run_dir.path.mkdir(parents=True, exist_ok=True)
    state = TrainState()
    if cfg.resume and run_dir.checkpoint.exists():
        state = _load_checkpoint(run_dir, model, optimizer, lr_scheduler, masks, method, generator)
        truncate_metrics(run_dir.metrics, state.epoch)
        log.info("resuming %s from epoch %d", run_dir.path, state.epoch)
    elif run_dir.metrics.exists():
        run_dir.metrics.unlink()  # an earlier attempt without a checkpoint: start over cleanly
    atomic_write_text(run_dir.config, OmegaConf.to_yaml(cfg, resolve=True))
    log.info("run %s: %s on %s, %s to sparsity %s over %d epochs (%d prune events), device %s",
             run_dir.path, cfg.model.name, cfg.dataset.name, cfg.method.name, format_sparsity(target),
             cfg.epochs, len(events), device)

    metrics = MetricsLog(run_dir)
    t_start = time.perf_counter() - state.last.get("wall_time_s", 0.0)

    def on_epoch(rec: dict, st: TrainState) -> None:
        rec["wall_time_s"] = time.perf_counter() - t_start
        metrics.write(rec)

    def on_prune(rec: dict, st: TrainState) -> None:
        metrics.write(rec)

    def after_epoch(st: TrainState) -> None:
        # After the epoch's prune events, so a resumed run continues from the pruned state.
        _save_checkpoint(run_dir, model, optimizer, lr_scheduler, masks, method, generator, st)

    trainer = Trainer(model, data, method, masks, optimizer, lr_scheduler, events, cfg.epochs, target,
                      cfg.batch_size, cfg.eval_batch_size, generator, cfg.progress,
                      on_epoch=on_epoch, on_prune=on_prune, after_epoch=after_epoch)
    try:
        state = trainer.run(state)
    finally:
        metrics.close()

    summary = _summary(cfg, target, run_dir, model, masks, method, state, time.perf_counter() - t_start, device)
    state.curve.append({"epoch": state.epoch, "sparsity": summary["achieved_sparsity"],
                        "test_acc": summary["final_test_acc"]})
    summary["curve"] = state.curve
    write_run_curve(state.curve, run_dir.curve_csv, run_dir.curve_png,
                    title=f"{cfg.method.name} {cfg.model.name}-{cfg.dataset.name} seed {cfg.seed}")
    atomic_torch_save(masks.state_dict(), run_dir.masks)
    write_json(run_dir.summary, summary)
    log.info("done: test %.2f%% (best %.2f%%) at sparsity %.6f (target %s) in %.0fs -> %s",
             summary["final_test_acc"], summary["best_test_acc"], summary["achieved_sparsity"],
             format_sparsity(target), summary["wall_time_s"], run_dir.summary)
    return summary


def _summary(cfg: DictConfig, target: float, run_dir: RunDir, model: torch.nn.Module, masks: Masks,
             method: Any, state: TrainState, wall: float, device: torch.device) -> dict[str, Any]:
    import torchvision

    counts = masks.nonzero_counts()
    params_total = sum(p.numel() for p in model.parameters())
    pruned = masks.total() - sum(counts)
    return {
        "model": cfg.model.name, "dataset": cfg.dataset.name, "method": cfg.method.name,
        "seed": cfg.seed, "epochs": cfg.epochs, "hash": config_hash(cfg),
        "target_sparsity": target,
        "achieved_sparsity": masks.sparsity(),
        "sparsity_is_outcome": bool(getattr(method, "sparsity_is_outcome", False)),
        "layer_sparsity": masks.layer_sparsity(),
        "prunable": masks.total(), "nonzero": sum(counts),
        "layer_prunable": {n: m.numel() for n, m in zip(masks.names, masks.values)},
        "layer_nonzero": dict(zip(masks.names, counts)),
        "params_total": params_total, "params_nonzero": params_total - pruned,
        "final_test_acc": state.last.get("test_acc"), "best_test_acc": state.best_test_acc,
        "final_train_acc": state.last.get("train_acc"), "final_test_loss": state.last.get("test_loss"),
        "wall_time_s": wall, "device": str(device),
        "versions": {"flipout_repro": flipout_repro.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "python": platform.python_version()},
        "git_sha": git_sha(), "run_dir": str(run_dir.path),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def _save_checkpoint(run_dir: RunDir, model, optimizer, lr_scheduler, masks, method, generator,
                     state: TrainState) -> None:
    atomic_torch_save({
        "format": "flipout-repro-checkpoint-1",
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(), "masks": masks.state_dict(),
        "method": method.state_dict(), "generator": generator.get_state(),
        "rng": _rng_states(),
        "state": {"epoch": state.epoch, "step": state.step, "events_done": state.events_done,
                  "best_test_acc": state.best_test_acc, "last": state.last, "curve": state.curve},
    }, run_dir.checkpoint)


def _load_checkpoint(run_dir: RunDir, model, optimizer, lr_scheduler, masks, method, generator) -> TrainState:
    try:
        ck = torch.load(run_dir.checkpoint, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict) or ck.get("format") != "flipout-repro-checkpoint-1":
            raise ValueError("not a flipout-repro checkpoint")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        lr_scheduler.load_state_dict(ck["lr_scheduler"])
        masks.load_state_dict(ck["masks"])
        method.load_state_dict(ck["method"])
        generator.set_state(ck["generator"])
    except Exception as exc:
        raise ConfigError("resume", True, f"cannot resume from {run_dir.checkpoint} ({type(exc).__name__}: {exc})",
                          "delete that file or pass resume=false to start the run over") from exc
    _set_rng_states(ck["rng"])
    return TrainState(**ck["state"])


def _rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as tensors and plain containers."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def _set_rng_states(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    n = rng["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = rng["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
