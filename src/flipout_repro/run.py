"""run(cfg) -> summary: build everything, train, write the results; skip finished runs, resume others.

Order matters for the promise that bad input touches nothing: the config is validated, the data set is
loaded and the model built before the run folder is created.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import flipout_repro
from flipout_repro import checkpoint
from flipout_repro import data as data_mod
from flipout_repro import worth  # issue 7: layers, multiply-adds, size, collapse, int8 at the end of a run
from flipout_repro.config import ConfigError, effective_sparsity, instantiate, validate
from flipout_repro.masking import Masks
from flipout_repro.report import write_run_curve
from flipout_repro.results import (MetricsLog, RunDir, RunLock, atomic_torch_save, atomic_write_text,
                                   config_hash, format_sparsity, git_sha, truncate_metrics, write_json)
from flipout_repro.train import Trainer, TrainingDiverged, TrainingInterrupted, TrainState

log = logging.getLogger("flipout_repro")


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when present, else cpu. ``cuda:k`` also becomes the current CUDA device, so that
    nothing that asks for "the" GPU (capability checks, compiled kernels, a stray context) lands on GPU 0."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def has_native_bf16(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA GPUs of compute capability 8.0 (Ampere) and newer only.

    ``torch.cuda.is_bf16_supported()`` also says yes on older GPUs (V100, T4), where bf16 is emulated:
    slower than fp32, and cuDNN has no bf16 convolutions there, so ``precision=auto`` picks fp32 on them.
    """
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


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


@dataclass
class Built:
    """A run's objects, freshly built from its config (also used to reload a finished run)."""

    data: data_mod.TensorData
    model: torch.nn.Module
    masks: Masks
    method: Any
    events: list
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    generator: torch.Generator
    speed: dict  # Trainer keyword arguments: compiled, autocast_dtype, channels_last


def speed_settings(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    """Resolve precision/channels_last "auto" for ``device``: bf16 and channels_last on CUDA."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and has_native_bf16(device))
    cl = cfg.channels_last if cfg.channels_last != "auto" else device.type == "cuda"
    return {"autocast_dtype": torch.bfloat16 if bf16 else None, "channels_last": bool(cl)}


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """cuDNN autotuning (fast) or deterministic kernels (reproducible) for the run about to start.

    On CUDA, ``deterministic=False`` turns on ``torch.backends.cudnn.benchmark``: the fixed input shapes
    of these runs let cuDNN time its convolution algorithms once and keep the fastest (the original
    FlipOut code turned it off and cuDNN's deterministic mode on, for reproducibility). ``True`` does
    that and asks torch for deterministic algorithms everywhere (``warn_only``: an op without a
    deterministic kernel warns instead of stopping a run). The switches are process-wide, so each run
    sets all of them, also back. CPU kernels are deterministic either way.
    """
    if deterministic:
        # cuBLAS reads this when it starts; it only takes effect if no CUDA matmul ran in this process yet
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    current = (torch.are_deterministic_algorithms_enabled(),
               torch.is_deterministic_algorithms_warn_only_enabled())
    if current[0] != deterministic or (deterministic and not current[1]):  # the call imports torch._inductor
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def build(cfg: DictConfig, target: float, device: torch.device) -> Built:
    """Seed, load the data, build model, masks, method, schedule events and optimizer."""
    seed_everything(cfg.seed)
    set_determinism(bool(cfg.deterministic), device)
    data = load_data(cfg, device)
    speed = speed_settings(cfg, device)
    model = instantiate(cfg.model, "model", in_channels=data.in_channels,
                        num_classes=cfg.dataset.num_classes, input_size=data.image_size)
    fmt = torch.channels_last if speed["channels_last"] else torch.contiguous_format
    model = model.to(device, memory_format=fmt)  # before the masks, so they share the layout
    masks = Masks.for_model(model)
    method = instantiate(cfg.method, "method")
    method.bind(model, masks)
    schedule = instantiate(cfg.schedule, "schedule")
    events = schedule.events(target, cfg.epochs, data.steps_per_epoch(cfg.batch_size)) if method.prunes else []
    optimizer, lr_scheduler = build_optimizer(cfg, model)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    speed["compiled"] = torch.compile(model) if cfg.compile else None
    if cfg.compile:
        method.compile_hooks()
    return Built(data, model, masks, method, events, optimizer, lr_scheduler, generator, speed)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train one configured run and return its summary (the existing one if it already finished).

    Raises ConfigError/DataError before anything is written, RunLocked when another process holds the
    run, TrainingInterrupted after a SIGTERM/SIGINT checkpoint, TrainingDiverged after recording the
    failure in summary.json.
    """
    validate(cfg)
    worth.check_config(cfg)  # issue 7: quantize / quantization.* values
    target = effective_sparsity(cfg)
    if target != cfg.sparsity:
        log.info("method=%s prunes nothing: sparsity=%s ignored, target 0", cfg.method.name, cfg.sparsity)
        cfg = cfg.copy()
        OmegaConf.set_struct(cfg, False)
        cfg.sparsity = 0.0
    run_dir = RunDir.for_config(cfg, target)
    if run_dir.finished() and not _starts_over(cfg, run_dir):
        return _already_finished(cfg, run_dir)
    device = resolve_device(cfg.device)
    b = build(cfg, target, device)
    with RunLock(run_dir):
        if run_dir.finished():
            if not _starts_over(cfg, run_dir):  # another process finished it while we were loading
                return json.loads(run_dir.summary.read_text())
            run_dir.summary.unlink()
        return _train(cfg, target, run_dir, b, device)


def _starts_over(cfg: DictConfig, run_dir: RunDir) -> bool:
    """A finished run is trained again only if it failed (diverged) and ``resume=false`` asks for it."""
    return not cfg.resume and json.loads(run_dir.summary.read_text()).get("status") == "failed"


def _already_finished(cfg: DictConfig, run_dir: RunDir) -> dict[str, Any]:
    """The summary of a finished run; with ``quantize=true`` and no int8 result yet, quantize it now."""
    summary = json.loads(run_dir.summary.read_text())
    if summary.get("status") == "failed":
        log.info("already finished, skipped: %s failed (%s); resume=false starts it over", run_dir.path,
                 summary.get("error"))
        return summary
    if cfg.quantize and "test_acc" not in (summary.get("quantization") or {}):  # none yet, or it failed
        log.info("already finished: %s; quantize=true, so it is quantized now", run_dir.path)
        try:
            worth.quantize_run_folder(run_dir.path, worth.settings_from_config(cfg), data_root=cfg.dataset.root,
                                      eval_batch_size=cfg.eval_batch_size)
        except Exception as exc:  # the finished run stays as it is
            log.error("int8 quantization of the finished run failed: %s: %s", type(exc).__name__, exc)
        return json.loads(run_dir.summary.read_text())
    log.info("already finished, skipped: %s", run_dir.path)
    return summary


def _train(cfg: DictConfig, target: float, run_dir: RunDir, b: Built, device: torch.device) -> dict[str, Any]:
    objs = dict(model=b.model, optimizer=b.optimizer, lr_scheduler=b.lr_scheduler, masks=b.masks,
                method=b.method, generator=b.generator)
    state = TrainState()
    if cfg.resume and run_dir.checkpoint.exists():
        try:
            state = checkpoint.load(run_dir.checkpoint, **objs)
        except checkpoint.CheckpointError as exc:
            raise ConfigError("resume", True, str(exc)) from exc
        truncate_metrics(run_dir.metrics, state.epoch)
        log.info("resuming %s at epoch %d, step %d", run_dir.path, state.epoch, state.step)
    else:
        # A fresh start (resume=false, or an attempt that died before its first checkpoint).
        for stale in (run_dir.metrics, run_dir.checkpoint):
            stale.unlink(missing_ok=True)
        shutil.rmtree(run_dir.tb, ignore_errors=True)
    atomic_write_text(run_dir.config, OmegaConf.to_yaml(cfg, resolve=True))
    if getattr(b.method, "sparsity_is_outcome", False):
        log.info("method=%s: the final sparsity is an outcome of training, not the target %s; both are"
                 " recorded", cfg.method.name, format_sparsity(target))
    log.info("run %s: %s on %s, %s to sparsity %s over %d epochs (%d prune events), device %s",
             run_dir.path, cfg.model.name, cfg.dataset.name, cfg.method.name, format_sparsity(target),
             cfg.epochs, len(b.events), device)
    log.info("precision %s, channels_last %s, compile %s, deterministic %s",
             "bf16" if b.speed["autocast_dtype"] else "fp32", b.speed["channels_last"], cfg.compile,
             cfg.deterministic)

    metrics = MetricsLog(run_dir, purge_step=state.epoch + 1 if state.epoch else None)
    t_start = time.perf_counter() - state.last.get("wall_time_s", 0.0)

    def on_epoch(rec: dict, st: TrainState) -> None:
        rec["wall_time_s"] = time.perf_counter() - t_start
        metrics.write(rec)

    trainer = Trainer(b.model, b.data, b.method, b.masks, b.optimizer, b.lr_scheduler, b.events, cfg.epochs,
                      target, cfg.batch_size, cfg.eval_batch_size, b.generator, cfg.progress,
                      on_epoch=on_epoch, on_prune=lambda rec, st: metrics.write(rec),
                      checkpoint=lambda st: checkpoint.save(run_dir.checkpoint, state=st, **objs), **b.speed)
    try:
        with stop_on_signals(trainer) as preempted:
            state = trainer.run(state)
    except TrainingDiverged as exc:
        # ``state`` is the trainer's live state, still at the last good epoch
        failed = _summary(cfg, target, run_dir, b.model, b.masks, b.method, state,
                          time.perf_counter() - t_start, device)
        write_json(run_dir.summary, failed | {"status": "failed", "error": str(exc)})
        raise
    finally:
        metrics.close()

    summary = _summary(cfg, target, run_dir, b.model, b.masks, b.method, state,
                       time.perf_counter() - t_start, device)
    state.curve.append({"epoch": state.epoch, "sparsity": summary["achieved_sparsity"],
                        "test_acc": summary["final_test_acc"]})
    summary["curve"] = state.curve
    write_run_curve(state.curve, run_dir.curve_csv, run_dir.curve_png,
                    title=f"{cfg.method.name} {cfg.model.name}-{cfg.dataset.name} seed {cfg.seed}")
    if preempted and cfg.quantize:
        log.warning("pre-empted after the last step: int8 quantization is left for the requeued job")
    summary |= worth.at_run_end(cfg, b.model, b.masks, b.data, run_dir, quantize=cfg.quantize and not preempted)
    atomic_torch_save(b.masks.state_dict(), run_dir.masks)
    write_json(run_dir.summary, summary)
    log.info("done: test %.2f%% (best %.2f%%) at sparsity %.6f (target %s) in %.0fs -> %s",
             summary["final_test_acc"], summary["best_test_acc"], summary["achieved_sparsity"],
             format_sparsity(target), summary["wall_time_s"], run_dir.summary)
    if preempted:  # the signal came after the last step: the run is complete, the launcher may requeue
        log.info("run written: handing the pre-emption signal on to the launcher")
        preempted.pop()()
    return summary


def preemption_signal() -> signal.Signals:
    """The signal submitit (the SLURM launcher) sends before a time limit or a pre-emption: USR2, or
    what ``SUBMITIT_PREEMPT_SIGNAL`` names."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[list[Callable[[], None]]]:
    """SIGTERM (what SLURM sends before pre-emption) and SIGINT: finish the step, checkpoint, stop.

    Under submitit (the SLURM launcher) the time-limit/pre-emption signal (USR2, or
    ``SUBMITIT_PREEMPT_SIGNAL``) already has a Python handler, which requeues the job and exits on the
    spot, wherever training is. That signal is taken over too: the step is finished and checkpointed
    first, and submitit's handler runs after, so the requeued job resumes from that step. If the signal
    comes after the last step, training ends normally and the yielded list holds submitit's handler, to
    be called once the run is written. A second signal while stopping falls back to the previous handler.
    """
    pending: list[Callable[[], None]] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous: dict[int, Any] = {}
    usr = preemption_signal()

    def handler(signum: int, frame: Any) -> None:
        log.warning("received %s: checkpointing after this step", signal.Signals(signum).name)
        trainer.stop_requested = True
        prev = previous.get(signum)
        if signum == usr and callable(prev) and not pending:
            pending.append(lambda: prev(signum, frame))
        _restore(previous)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)  # recorded before the handler can run
        signal.signal(sig, handler)
    if usr not in previous and callable(signal.getsignal(usr)):  # a Python handler, i.e. submitit's
        previous[usr] = signal.getsignal(usr)
        signal.signal(usr, handler)
    stopped = False
    try:
        yield pending
    except TrainingInterrupted:
        stopped = True
        raise
    finally:
        _restore(previous)
        if stopped and pending:
            log.info("checkpoint written: handing %s on to the launcher", signal.Signals(usr).name)
            pending.pop()()


def _restore(previous: dict[int, Any]) -> None:
    for sig, old in previous.items():
        if old is not None:  # None: a handler not installed from Python, nothing to put back
            signal.signal(sig, old)


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
        "status": "completed",
        "final_test_acc": state.last.get("test_acc"), "best_test_acc": state.best_test_acc,
        "final_train_acc": state.last.get("train_acc"), "final_test_loss": state.last.get("test_loss"),
        "wall_time_s": wall, "device": str(device),
        "precision": "bf16" if speed_settings(cfg, device)["autocast_dtype"] else "fp32",
        "versions": {"flipout_repro": flipout_repro.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "python": platform.python_version()},
        "git_sha": git_sha(), "run_dir": str(run_dir.path),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
