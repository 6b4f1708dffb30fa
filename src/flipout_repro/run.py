"""run(cfg) -> summary: skip a finished run, lock its folder, resume or start, train, write the summary.

Order matters for the promise that bad input touches nothing: the config is validated, the data set is
loaded and the model built before the run folder is created.
"""
from __future__ import annotations

import json
import logging
import math
import platform
from importlib import metadata
import shutil
import time
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import flipout_repro
from flipout_repro.training import phases
from flipout_repro.analysis import run_end
from flipout_repro.analysis.export import nm_summary
from flipout_repro.analysis.plots import run_title, write_run_curve
from flipout_repro.analysis.quantize import quantize_run_folder, result_for, settings_from_config
from flipout_repro.sparsity.budgets import Budget
from flipout_repro.config.targets import prepare
from flipout_repro.config.validate import Checked, validate
from flipout_repro.sparsity.masking import Masks, reached
from flipout_repro.config.precision import pin_precision
from flipout_repro.config.identity import identity, run_dir as identity_run_dir
from flipout_repro.config.migrate import migrate
from flipout_repro.rundir import (RunDir, RunLock, Summary, atomic_torch_save, atomic_write_text, format_sparsity,
                                  git_sha, read_summary, real_folder, remove_temporaries, write_json)
from flipout_repro.training import checkpoint, derive, distributed
from flipout_repro.training.build import Built, build, build_model, resolve_device, speed_settings
from flipout_repro.errors import ConfigError
from flipout_repro.methods.derived import IMP
from flipout_repro.sparsity.budgets import target_zeros
from flipout_repro.sparsity.masking import prunable_weights
from flipout_repro.training.init_from import pin_init_from
from flipout_repro.training.collapse import LayerCollapsed, collapse_watch
from flipout_repro.training.metrics_log import MetricsLog, truncate_metrics
from flipout_repro.training.run_log import run_log, write_command
from flipout_repro.training.signals import stop_on_signals
from flipout_repro.training.trackers import open_tracker
from flipout_repro.training.trainer import Trainer, TrainingDiverged, TrainState, position

log = logging.getLogger("flipout_repro")


class SparsityNotReached(RuntimeError):
    """A run that ended short of its target sparsity; recorded in summary.json as failed."""


#: the key :func:`run` adds (True) to the summary it returns when the run had finished before: nothing trained
SKIPPED = "skipped"
#: the key a data-parallel rank other than 0 returns (True), with the run's folder: it writes no summary
FOLLOWER = "follower"


def run(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train one configured run and return its summary (the existing one, with ``SKIPPED: True``, if it
    had already finished; that key is never written to summary.json). ``overrides`` (the command line's, from Hydra) go to the run folder's command.txt.

    Raises ConfigError/DataError before anything is written, RunLocked when another process holds the
    run, TrainingInterrupted after a SIGTERM/SIGINT checkpoint, TrainingDiverged after recording the
    failure in summary.json.
    """
    checked = validate(cfg)  # the method and the schedule, built once
    if isinstance(checked.method, IMP) and OmegaConf.select(cfg, "parent.run") is None:
        return _chain(cfg, checked.method, overrides)
    return _run_one(cfg, checked, overrides)


def _chain(cfg: DictConfig, method: IMP, overrides: list[str] | None) -> dict[str, Any]:
    """``method=imp``: its levels, each a run (a finished one is skipped), level l the parent of l+1; the
    summary of the last, at exactly ``sparsity``. Levels below it are shared by every chain that passes
    them (a level is fixed by protocol, IMP knobs and its sparsity)."""
    shapes = [tuple(p.shape) for _, p in prunable_weights(build_model(
        cfg.model, cfg.dataset.in_channels, cfg.dataset.num_classes, cfg.dataset.image_size, "cpu"))]
    dense = Budget(cfg.budget.name, bool(cfg.budget.dense_first), bool(cfg.budget.dense_last)).dense(len(shapes))
    total = sum(math.prod(s) for s in shapes)
    excluded = sum(math.prod(s) for i, s in enumerate(shapes) if i in dense)
    try:
        zeros = method.ladder(total, excluded, target_zeros(total, float(cfg.sparsity)))
    except ValueError as exc:
        raise ConfigError("sparsity", cfg.sparsity, f"is out of reach of method=imp: {exc}",
                          "lower sparsity, or use budget=global (no dense layer)") from exc
    summary: dict[str, Any] = {}
    parent = None
    for level, z in enumerate(zeros):
        step = cfg.copy()
        OmegaConf.set_struct(step, False)
        step.sparsity = z / total if level < len(zeros) - 1 else cfg.sparsity  # the last: the run the command names
        step.parent.run = parent
        log.info("method=imp: level %d of %d, sparsity %s", level, len(zeros) - 1, format_sparsity(step.sparsity))
        summary = _run_one(step, validate(step), overrides)
        if summary.get("status") != "completed" and not summary.get(FOLLOWER):
            return summary
        parent = summary["run_dir"]
    return summary


def _run_one(cfg: DictConfig, checked: Checked, overrides: list[str] | None) -> dict[str, Any]:
    given = cfg.sparsity
    cfg, target = prepare(cfg, checked.method)
    if target != given:
        log.info("method=%s prunes nothing: sparsity=%s ignored, target 0", cfg.method.name, given)
    device = distributed.setup(resolve_device(cfg.device))  # torchrun/SLURM ranks: join the group, cuda:LOCAL_RANK
    cfg = pin_precision(cfg, device)  # bf16 and fp32 runs never share a folder
    cfg = pin_init_from(cfg)  # model.init_from: checked, and hashed by its content
    cfg = derive.pin_parent(cfg, checked.method)  # parent.run: checked; a control's inherited keys filled in
    target = float(cfg.sparsity) if OmegaConf.select(cfg, "parent.run") is not None else target
    if distributed.is_main():
        migrate(cfg.results_dir)  # run folders of an earlier identity format move to theirs, once
    run_dir = identity_run_dir(cfg)
    if not distributed.is_main():  # data-parallel ranks > 0 train alongside rank 0 and write nothing
        return _follow(cfg, target, device, checked) | {"run_dir": str(run_dir.path), FOLLOWER: True}
    if run_dir.finished() and not _starts_over(cfg, run_dir):
        distributed.send_start(None)  # the other ranks (if any) have nothing to train
        return _already_finished(cfg, run_dir)
    b = build(cfg, target, device, checked)
    real_folder(run_dir.path, cfg.results_dir)  # no symbolic link below results_dir is followed
    with RunLock(run_dir):
        if run_dir.finished():
            if not _starts_over(cfg, run_dir):  # another process finished it while we were loading
                distributed.send_start(None)
                return {**read_summary(run_dir), SKIPPED: True}
            run_dir.summary.unlink()
        attempt = "resumed from its checkpoint" if cfg.resume and run_dir.checkpoint.exists() else \
            "started" if not run_dir.metrics.exists() else "started over (resume=false)" if not cfg.resume else \
            "started over (no checkpoint to resume from)"
        for stale in remove_temporaries(run_dir.path):  # a write cut short by SIGKILL
            log.info("removed %s, the partial file of a killed attempt", stale.name)
        write_command(run_dir.path, attempt, overrides)
        with run_log(run_dir.path, attempt):  # run.log: this attempt's lines, after one that names it
            return _train(cfg, target, run_dir, b, device)


def _starts_over(cfg: DictConfig, run_dir: RunDir) -> bool:
    """A finished run is trained again only if it failed: diverged and ``resume=false`` asks for it, or
    stopped at a layer collapse (``on_collapse=stop``) and this command lets it train on."""
    summary = read_summary(run_dir)
    if summary.get("status") != "failed":
        return False
    collapse_stop = summary.get("stop_reason") == "layer_collapse"
    return not cfg.resume or (collapse_stop and cfg.on_collapse != "stop")


def _already_finished(cfg: DictConfig, run_dir: RunDir) -> dict[str, Any]:
    """The summary of a finished run; with ``quantize=true`` and no int8 result yet, quantize it now."""
    summary = read_summary(run_dir)
    if summary.get("status") == "failed":
        again = "on_collapse=warn trains it on" if summary.get("stop_reason") == "layer_collapse" else \
            "resume=false starts it over"
        log.info("already finished, skipped: %s failed (%s); %s", run_dir.path, summary.get("error"), again)
        return {**summary, SKIPPED: True}
    wanted = settings_from_config(cfg) if cfg.quantize else None
    if wanted and not result_for(summary.get("quantization"), wanted):  # none with these settings, or it failed
        log.info("already finished: %s; quantize=true and no int8 result with these settings (%s) yet, so it"
                 " is quantized now", run_dir.path, wanted.key)
        try:
            quantize_run_folder(run_dir.path, wanted, data_root=cfg.dataset.root,
                                eval_batch_size=cfg.eval_batch_size)
        except Exception as exc:  # the finished run stays as it is
            log.error("int8 quantization of the finished run failed: %s: %s", type(exc).__name__, exc)
        return {**read_summary(run_dir), SKIPPED: True}
    log.info("already finished, skipped: %s", run_dir.path)
    return {**summary, SKIPPED: True}


def _train(cfg: DictConfig, target: float, run_dir: RunDir, b: Built, device: torch.device) -> dict[str, Any]:
    objs = dict(model=b.model, optimizer=b.optimizer, lr_scheduler=b.lr_scheduler, masks=b.masks,
                method=b.method, generator=b.generator, lookahead=b.lookahead)
    state, kept, start_record = TrainState(), None, None
    ident = identity(cfg)
    tag = checkpoint.run_tag(ident.hash, cfg.seed, f"{ident.protocol_label()}; {ident.axes_label()}")
    if cfg.resume and run_dir.checkpoint.exists():
        # CheckpointError (bad input, exit code 2): damaged, or written by another run
        state = checkpoint.load(run_dir.checkpoint, run=tag, **objs)
        kept = truncate_metrics(run_dir.metrics, state.step, state.epoch)
        log.info("resuming %s after %s", run_dir.path, position(state))  # the stop message's words
    else:
        # A fresh start (resume=false, or an attempt that died before its first checkpoint).
        for stale in (run_dir.metrics, run_dir.checkpoint, run_dir.parent):
            stale.unlink(missing_ok=True)
        shutil.rmtree(run_dir.tb, ignore_errors=True)
        shutil.rmtree(run_dir.states, ignore_errors=True)
        if getattr(b.method, "from_parent", False) and OmegaConf.select(cfg, "parent.run") is not None:
            state, start_record, facts = derive.start(cfg, b, run_dir)
            write_json(run_dir.parent, facts)  # the parent's identity and numbers: the child needs it no more
        if b.lookahead is not None:  # the slow copy starts from the weights the run starts with
            b.lookahead.reset()
    record = b.method.record_epochs() if hasattr(b.method, "record_epochs") else []

    def keep_state(st: TrainState) -> None:  # the states a derived run takes (IMP's rewinding)
        if st.batch == 0 and st.epoch in record and not run_dir.state_file(st.epoch).exists():
            real_folder(run_dir.states, cfg.results_dir)
            atomic_torch_save(checkpoint.snapshot(state=st, **objs) | {"run": tag}, run_dir.state_file(st.epoch))

    def save_checkpoint(st: TrainState) -> None:
        keep_state(st)
        checkpoint.save(run_dir.checkpoint, state=st, run=tag, **objs)

    keep_state(state)
    distributed.send_start(objs, state)  # data-parallel: every rank starts from rank 0's state
    atomic_write_text(run_dir.config, OmegaConf.to_yaml(cfg, resolve=True))
    if getattr(b.method, "sparsity_is_outcome", False):
        log.info("method=%s: the final sparsity is an outcome of training, not the target %s; both are"
                 " recorded", cfg.method.name, format_sparsity(target))
    log.info("run %s: %s on %s, %s to sparsity %s over %d epochs (%d prune event%s), device %s",
             run_dir.path, cfg.model.name, cfg.dataset.name, cfg.method.name, format_sparsity(target),
             cfg.epochs, len(b.events), "" if len(b.events) == 1 else "s", device)
    log.info("precision %s, channels_last %s, compile %s, deterministic %s",
             "bf16" if b.speed["autocast_dtype"] else "fp32", b.speed["channels_last"], cfg.compile,
             cfg.deterministic)

    tracker = open_tracker(cfg, run_dir, ident)  # logger=wandb|mlflow; TensorBoard always
    try:
        metrics = MetricsLog(run_dir, replay=kept, tracker=tracker)
        if start_record is not None:
            metrics.write(start_record)  # the start mask, as a prune record: compute is counted from it
        t_start = time.perf_counter() - state.last.get("wall_time_s", 0.0)

        def on_epoch(rec: dict, st: TrainState) -> None:
            rec["wall_time_s"] = time.perf_counter() - t_start
            metrics.write(rec)

        watch = collapse_watch(cfg.on_collapse)  # a collapse is warned at its prune event

        def on_prune(rec: dict, st: TrainState) -> None:
            metrics.write(rec)
            watch(rec)  # on_collapse=stop: LayerCollapsed, the run ends here

        trainer = _trainer(cfg, target, b, cfg.progress, on_epoch=on_epoch, on_prune=on_prune,
                           checkpoint=save_checkpoint,
                           on_mask_update=lambda rec, st: metrics.write(rec))
        try:
            with stop_on_signals(trainer) as preempted:
                state = trainer.run(state)
        except TrainingDiverged as exc:
            # ``state`` is the trainer's live state, still at the last good epoch
            failed = _summary(cfg, target, run_dir, b.model, b.masks, b.method, state,
                              time.perf_counter() - t_start, device)
            write_json(run_dir.summary, failed | {"status": "failed", "error": str(exc)})
            raise
        except LayerCollapsed as exc:  # on_collapse=stop: the summary says where and why
            stopped = _summary(cfg, target, run_dir, b.model, b.masks, b.method, state,
                               time.perf_counter() - t_start, device)
            write_json(run_dir.summary, stopped | {"status": "failed", "error": str(exc),
                                                   "stop_reason": "layer_collapse", "collapsed_layers": exc.layers,
                                                   "stopped_at": {"epoch": exc.epoch, "step": exc.step}})
            raise
        finally:
            metrics.close()

        summary = _summary(cfg, target, run_dir, b.model, b.masks, b.method, state,
                           time.perf_counter() - t_start, device)
        if not summary["sparsity_is_outcome"] and not reached(target, summary["achieved_sparsity"]):
            short = SparsityNotReached(f"ended at sparsity {summary['achieved_sparsity']:.6g}, short of its target"
                                       f" {format_sparsity(target)}: the schedule's prune events did not reach it"
                                       " (recorded as failed; the report leaves it out)")
            write_json(run_dir.summary, summary | {"status": "failed", "error": str(short),
                                                   "stop_reason": "sparsity_not_reached"})
            raise short
        state.curve.append({"epoch": state.epoch, "sparsity": summary["achieved_sparsity"],
                            "test_acc": summary["final_test_acc"]})
        summary["curve"] = state.curve
        if distributed.world_size() > 1:
            summary["world_size"] = distributed.world_size()
        write_run_curve(state.curve, run_dir.curve_csv, run_dir.curve_png, title=run_title(cfg))
        if preempted and cfg.quantize:
            log.warning("pre-empted after the last step: int8 quantization is left for the requeued job")
        facts = json.loads(run_dir.parent.read_text()) if run_dir.parent.exists() else None
        summary |= run_end.at_run_end(cfg, b.model, b.masks, b.data, run_dir, quantize=cfg.quantize and not preempted,
                                      start_step=int(facts["start_step"]) if facts else 0)
        summary |= _derived_entries(summary, facts, b.method)
        atomic_torch_save(b.model.state_dict(), run_dir.model)  # the final weights, apart from checkpoint.pt
        atomic_torch_save(b.masks.state_dict(), run_dir.masks)
        write_json(run_dir.summary, summary)
        try:
            tracker.scalars(run_end.run_end_scalars(summary, int(cfg.epochs)))
            tracker.finish(summary)
        except Exception as exc:  # noqa: BLE001 - the run is written; a tracker must never cost it
            log.error("logger=%s: the run's end was not sent: %s: %s", cfg.logger, type(exc).__name__, exc)
        log.info("done: test %.2f%% (best %.2f%%) at sparsity %.6f (target %s) in %.0fs -> %s",
                 summary["final_test_acc"], summary["best_test_acc"], summary["achieved_sparsity"],
                 format_sparsity(target), summary["wall_time_s"], run_dir.summary)
        if preempted:  # the signal came after the last step: the run is complete, the launcher may requeue
            log.info("run written: handing the pre-emption signal on to the launcher")
            preempted.pop()()
        phases.mark("done")
        return summary
    except BaseException:
        tracker.finish(None)  # the attempt failed or was stopped: its tracker run says so
        raise


def _derived_entries(summary: dict[str, Any], facts: dict[str, Any] | None, method: Any) -> dict[str, Any]:
    """A run's training compute of its own and of what produced it (an IMP level: its levels so far),
    and a derived run's parent (what ``parent.json`` kept of it) and IMP level."""
    own = summary.get("train_macs_fraction")
    out: dict[str, Any] = {"train_macs_fraction_own": own}
    if facts is not None:
        out["parent"] = {k: v for k, v in facts.items() if k not in ("start_step", "level")}
    if isinstance(method, IMP):
        level = 0 if facts is None else int(facts.get("level", 0))
        out["imp"] = {**summary.get("imp", {}), "level": level}
        before = (facts or {}).get("train_macs_fraction")
        if own is not None and before is not None:
            out["train_macs_fraction"] = own + float(before)
    return out


def _trainer(cfg: DictConfig, target: float, b: Built, progress: bool, **hooks: Any) -> Trainer:
    """The run's Trainer; in a data-parallel job with the gradient all-reduce (training/distributed.py)."""
    dist = distributed.GradSync(list(b.model.parameters())) if distributed.world_size() > 1 else None
    return Trainer(b.model, b.data, b.method, b.masks, b.optimizer, b.lr_scheduler, b.events, cfg.epochs,
                   target, cfg.batch_size, cfg.eval_batch_size, b.generator, progress,
                   label_smoothing=float(cfg.loss.label_smoothing), loss_reduction=str(cfg.loss.reduction),
                   lookahead=b.lookahead, tta=int(cfg.tta), dist=dist, **hooks, **b.speed, **b.axes)


def _follow(cfg: DictConfig, target: float, device: torch.device, checked: Checked) -> dict[str, Any]:
    """A data-parallel rank other than 0: the same objects, rank 0's start state, the same training, with
    no run folder, metrics or checkpoint of its own. Returns {} (rank 0 returns the summary)."""
    b = build(cfg, target, device, checked)
    objs = dict(model=b.model, optimizer=b.optimizer, lr_scheduler=b.lr_scheduler, masks=b.masks,
                method=b.method, generator=b.generator, lookahead=b.lookahead)
    state = distributed.receive_start(objs)
    if state is None:  # rank 0 found the run finished
        return {}
    watch = collapse_watch(cfg.on_collapse, quiet=True)  # on_collapse=stop: every rank stops
    trainer = _trainer(cfg, target, b, progress=False, on_prune=lambda rec, st: watch(rec))
    with stop_on_signals(trainer):
        trainer.run(state)
    return {}


def _summary(cfg: DictConfig, target: float, run_dir: RunDir, model: torch.nn.Module, masks: Masks,
             method: Any, state: TrainState, wall: float, device: torch.device) -> dict[str, Any]:
    """summary.json's entries at the end of training (rundir.Summary); the run's end adds to them."""
    counts = masks.nonzero_counts()
    params_total = sum(p.numel() for p in model.parameters())
    pruned = masks.total() - sum(counts)
    nm = cfg.pattern.name == "nm"  # N:M: its checks
    val = state.best_val_acc is not None  # dataset.train_fraction < 1 only
    return Summary(
        model=cfg.model.name, dataset=cfg.dataset.name, method=cfg.method.name, seed=cfg.seed,
        target_sparsity=target, config=OmegaConf.to_container(cfg, resolve=True), epochs=cfg.epochs,
        hash=identity(cfg).hash, achieved_sparsity=masks.sparsity(),
        sparsity_is_outcome=bool(getattr(method, "sparsity_is_outcome", False)),
        prunable=masks.total(), nonzero=sum(counts),  # per layer: "layers" (analysis/run_end.py)
        params_total=params_total, params_nonzero=params_total - pruned, status="completed",
        final_test_acc=state.last.get("test_acc"), best_test_acc=state.best_test_acc,
        final_train_acc=state.last.get("train_acc"), final_test_loss=state.last.get("test_loss"),
        final_val_acc=state.last.get("val_acc") if val else None, best_val_acc=state.best_val_acc,
        wall_time_s=wall, device=str(device),
        precision="bf16" if speed_settings(cfg, device)["autocast_dtype"] else "fp32",
        versions={"flipout_repro": flipout_repro.__version__, "torch": torch.__version__,
                  "torchvision": _version("torchvision"), "python": platform.python_version()},
        git_sha=git_sha(), run_dir=str(run_dir.path),
        init_from={"path": cfg.model.init_from, "sha256": cfg.model.init_from_sha256}
        if cfg.model.get("init_from") is not None else None,
        pattern=nm_summary(masks, cfg.pattern.n, cfg.pattern.m, Budget(
            "global", cfg.budget.dense_first, cfg.budget.dense_last).dense(len(masks.names))) if nm else None,
        extra=method.summary_stats(),  # dynamic sparse training: the share of weights ever active
    ).to_json()


def _version(dist: str) -> str | None:
    """An installed distribution's version from its metadata (None if it is not installed): importing
    torchvision only to read ``__version__`` cost every run about a second. The metadata has
    no local tag (``0.29.1``, not ``0.29.1+cu130``); torch's own version, which has it, says the build."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
