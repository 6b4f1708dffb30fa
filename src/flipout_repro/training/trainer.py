"""The training loop: epochs, steps, evaluation, prune events. It calls method hooks and never asks which
method it runs (see methods/base.py for the order of the hooks).

Metrics accumulate on the device and are read once per epoch, so a step has no host synchronisation.
"""
from __future__ import annotations

import logging
import math
import time
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from flipout_repro.training import phases
from flipout_repro.data import DataSet
from flipout_repro.sparsity.budgets import Budget
from flipout_repro.sparsity.masking import Masks, drop_and_grow, prune_to
from flipout_repro.methods.base import Method
from flipout_repro.sparsity.schedule import PruneEvent
from flipout_repro.training.evaluate import autocast, evaluate

log = logging.getLogger("flipout_repro")


def show_bar(progress: bool, stream: Any = None) -> bool:
    """Whether to draw the progress bar: ``progress`` is on and the bar's stream (stderr) is a terminal. Off
    a terminal (output to a file, a pipe, a cluster job's log) a bar's redraws would fill the file; the
    one line per epoch (logged at the epoch's end) says all it would."""
    stream = sys.stderr if stream is None else stream
    return bool(progress) and bool(getattr(stream, "isatty", lambda: False)())


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint of the exact position was written before stopping."""


@dataclass
class TrainState:
    """Where training stands: resumable at any step.

    ``batch`` > 0 means the state is in the middle of epoch ``epoch + 1``: ``order`` is that epoch's
    permutation and ``partial`` its running sums, so a resumed run replays nothing and skips nothing.
    """

    epoch: int = 0
    step: int = 0
    events_done: int = 0
    best_test_acc: float = 0.0
    best_val_acc: float | None = None  # None: nothing is held out (dataset.train_fraction=1)
    last: dict = field(default_factory=dict)  # the last epoch record
    curve: list = field(default_factory=list)  # (epoch, sparsity, test_acc) before each event and at the end
    batch: int = 0
    order: torch.Tensor | None = None
    partial: dict = field(default_factory=dict)


@dataclass
class Trainer:
    """Everything the loop needs; ``on_epoch``/``on_prune`` receive the records to write,
    ``checkpoint`` is called at the end of every epoch and when a stop is requested."""

    model: nn.Module
    data: DataSet
    method: Method
    masks: Masks
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    events: list[PruneEvent]
    epochs: int
    target: float
    batch_size: int
    eval_batch_size: int
    generator: torch.Generator
    progress: bool = True
    on_epoch: Callable[[dict, TrainState], None] = lambda rec, st: None
    on_prune: Callable[[dict, TrainState], None] = lambda rec, st: None
    checkpoint: Callable[[TrainState], None] = lambda st: None
    #: set (e.g. by a signal handler) to stop after the current step with a checkpoint
    stop_requested: bool = False
    #: the callable that runs the forward pass (``torch.compile(model)``), default the model itself
    compiled: Callable | None = None
    #: bf16 autocast (fp32 master weights) when set; None trains in fp32
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    #: label smoothing of the training loss (``loss.label_smoothing``); evaluation stays plain CE
    label_smoothing: float = 0.0
    #: the training loss over a batch: its ``mean`` or its ``sum`` (``loss.reduction``); metrics are means
    loss_reduction: str = "mean"
    #: the slow copy of ``optim.lookahead_every`` (training/lookahead.py), updated after each step; None: none
    lookahead: Any = None
    #: test-time augmentation of every evaluation (``tta``: training/evaluate.py)
    tta: int = 0
    #: receives the record of every dynamic-sparse-training mask update (methods/base.py: mask_update)
    on_mask_update: Callable[[dict, TrainState], None] = lambda rec, st: None
    #: the layer budget of the schedule's events (budgets.Budget) and the sparsity pattern
    #: (patterns.Pattern; None: unstructured), passed to prune_to
    budget: Any = Budget("global")
    pattern: Any = None
    #: data-parallel runs: the gradient all-reduce and epoch sums over ranks (training/distributed.py)
    dist: Any = None

    def __post_init__(self) -> None:
        self.forward = self.compiled if self.compiled is not None else self.model
        self._saved: str | None = None  # where the checkpoint on disk stands, for the divergence message
        self._at: int | None = None  # the 0-based index of the step being taken in the loop (None: outside it)
        self._mask_record: dict | None = None  # the record of a mask update the last step made
        self._stepped = False  # the first step is marked for flipout-bench --startup (phases.py)
        # a per-step lr schedule (lr_schedule.PerStepLR) steps after every optimizer step, others per epoch
        self._lr_per_step = bool(getattr(self.lr_scheduler, "per_step", False))

    def run(self, state: TrainState) -> TrainState:
        """Train from ``state`` to the last epoch."""
        phases.mark("train_start")
        spe = self.data.steps_per_epoch(self.batch_size)
        self._saved = position(state) if state.step else None  # a resumed state is the checkpoint's
        if state.step == 0:
            order = self.data.epoch_order(self.generator)
            self.method.on_train_start(self.data.train_batches(self.batch_size, self.generator, order),
                                       self.target, self.epochs, spe)
            self._apply_due_events(state, at_step=0, test_acc=None)
        bar = tqdm(total=self.epochs * spe, initial=state.step, disable=not show_bar(self.progress),
                   unit="step", dynamic_ncols=True, leave=False)
        try:
            with logging_redirect_tqdm():
                for epoch in range(state.epoch + 1, self.epochs + 1):
                    self._train_epoch(epoch, spe, state, bar)
        finally:
            bar.close()
        phases.mark("train_end")
        return state

    def _train_epoch(self, epoch: int, spe: int, state: TrainState, bar: tqdm) -> None:
        self.model.train()
        epoch_start = getattr(self.model, "epoch_start", None)  # a model's own switches (airbench's bias)
        if epoch_start is not None:
            epoch_start(epoch)
        dev = self.data.train_y.device
        p = state.partial if state.batch else {}
        start = [p.get("loss_sum", 0.0), p.get("correct", 0), p.get("seen", 0)]  # a resumed half epoch's sums
        if self.dist is not None:  # this rank's own sums, or the total on every rank (training/distributed.py)
            start, base = self.dist.start_sums(p)
        loss_sum = torch.tensor(start[0], device=dev)
        correct = torch.tensor(start[1], device=dev, dtype=torch.long)
        seen = start[2]
        lr = p.get("lr", self.optimizer.param_groups[-1]["lr"])  # its first rate (the last group: optim.lr)
        t0 = time.perf_counter() - p.get("time_s", 0.0)
        order = state.order if state.batch else self.data.epoch_order(self.generator)
        epoch_end = epoch * spe
        for x, y in self.data.train_batches(self.batch_size, self.generator, order, start=state.batch,
                                            epoch=epoch):
            self._at = state.step
            ce, out = self.step(x, y)
            state.step += 1
            if self._lr_per_step:
                self.lr_scheduler.step()
            if self.lookahead is not None:
                self.lookahead.after_step(state.step)
            if self._mask_record is not None:
                self.on_mask_update(self._mask_record | {"epoch": state.epoch}, state)
                self._mask_record = None
            if not self._stepped:
                self._stepped = True
                phases.mark("first_step")
            loss_sum += ce.detach() * len(y)
            correct += (out.detach().argmax(1) == y).sum()
            seen += len(y)
            if state.step != epoch_end:  # events at an epoch's end wait for its evaluation
                self._apply_due_events(state, at_step=state.step, test_acc=None)
            bar.update(1)
            if (self.stop_requested if self.dist is None else self.dist.stop) and state.step != epoch_end:
                if self.dist is not None:  # all ranks stop at this step (the agreed request)
                    loss_sum, correct, seen = self.dist.settle(self.model, [loss_sum, correct, seen], base)
                # never a checkpoint of bad weights over a good one
                self._check_finite(epoch, float(loss_sum) / seen, lr)
                state.batch, state.order = state.step - (epoch - 1) * spe, order
                state.partial = {"loss_sum": float(loss_sum), "correct": int(correct), "seen": seen,
                                 "lr": lr, "time_s": time.perf_counter() - t0}
                if self.dist is not None and self.dist.rank_sums is not None:
                    state.partial["ranks"] = self.dist.rank_sums  # each rank goes on from its own sums
                self._save(state)
                raise TrainingInterrupted(f"stopped after {position(state)}: a checkpoint was written; run"
                                          " the same command again to resume there")
        if self.dist is not None:  # sums over all ranks; BatchNorm statistics averaged
            loss_sum, correct, seen = self.dist.settle(self.model, [loss_sum, correct, seen], base)
        state.batch, state.order, state.partial = 0, None, {}
        self.method.on_epoch_end(epoch)
        if not self._lr_per_step:
            self.lr_scheduler.step()
        test_loss, test_acc = evaluate(self.forward, self.data, self.eval_batch_size, self.autocast_dtype,
                                       self.channels_last, module=self.model, tta=self.tta)
        val = {}
        if self.data.val_y is not None:  # the held-out part of the training set (dataset.train_fraction)
            val["val_loss"], val["val_acc"] = evaluate(self.forward, self.data, self.eval_batch_size,
                                                       self.autocast_dtype, self.channels_last, self.model, "val",
                                                       tta=self.tta)
            state.best_val_acc = max(state.best_val_acc or 0.0, val["val_acc"])
        rec = {
            "type": "epoch", "epoch": epoch, "step": state.step,
            "train_loss": float(loss_sum) / seen, "train_acc": 100.0 * float(correct) / seen,
            "test_loss": test_loss, "test_acc": test_acc, **val,
            "lr": lr,
            "sparsity": self.masks.sparsity(), "sparsity_layer": self.masks.layer_sparsity(),
            **self.method.epoch_stats(),
            "time_s": time.perf_counter() - t0,
        }
        self._check_finite(epoch, rec["train_loss"], lr)
        state.epoch = epoch
        state.best_test_acc = max(state.best_test_acc, test_acc)
        state.last = rec
        log.info(
            "epoch %d/%d | loss %.4f | train %.2f%% | test %.2f%%%s | sparsity %.5f | lr %.4g | %.1fs",
            epoch, self.epochs, rec["train_loss"], rec["train_acc"], test_acc,
            f" | val {val['val_acc']:.2f}%" if val else "", rec["sparsity"], rec["lr"], rec["time_s"],
        )
        self.on_epoch(rec, state)
        self._apply_due_events(state, at_step=state.step, test_acc=test_acc)
        self._save(state)  # after the epoch's prune events: a resumed run starts pruned

    def _save(self, state: TrainState) -> None:
        self.checkpoint(state)
        self._saved = position(state)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step with the method's hooks; returns (mean cross-entropy, logits), both on device.
        The cross-entropy is label-smoothed by ``label_smoothing`` (= STR's LabelSmoothing,
        net_utils.py:41-63); the loss is its mean or its sum over the batch (``loss_reduction``)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(x.device.type, self.autocast_dtype):
            out = self.forward(x)
            ce = F.cross_entropy(out, y, label_smoothing=self.label_smoothing, reduction=self.loss_reduction)
            reg = self.method.regularizer(self.model)
            loss = ce if reg is None else ce + reg
            if self.loss_reduction == "sum":
                ce = ce.detach() / len(y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist is not None:  # the whole batch's gradient on every rank, before any hook sees it
            self.dist.all_reduce(len(y), self.stop_requested)
        if self.method.modifies_grads:
            # The hook sees masked gradients (FlipOut's noise scale is the masked gradient's norm) and
            # whatever it adds to pruned entries is masked away again.
            self.masks.apply_to_grads()
            self.method.after_backward(self.model)
            self.masks.apply_to_grads()
        # Otherwise the gradients are not masked: SGD (and any element-wise optimizer) updates each entry
        # from its own gradient, momentum and weight only, and pruned entries are zeroed right after the
        # step, so masking them first would change no kept weight and no pruned one (it stays 0).
        if self._at is None or not self.method.replaces_step(self._at):
            self.optimizer.step()
        self.masks.apply_to_weights()
        if self._at is not None:
            self._mask_update(self._at)
        self.method.after_step(self.model)
        return ce, out

    def _mask_update(self, at: int) -> None:
        """The method's drop-and-grow update due at step index ``at``, if any: masks through
        masking.drop_and_grow, the optimizer state of newly active weights zeroed, a record."""
        update = self.method.mask_update(at)
        if update is None:
            return
        done = drop_and_grow(update.drop_scores, update.grow_scores, self.masks, update.counts,
                             update.regrow_dropped)
        reset_optimizer_state(self.optimizer, self.masks.params, done.new)
        self.method.after_mask_update(done)
        self._mask_record = {"type": "mask_update", "step": at + 1, **update.info, "dropped": sum(done.dropped),
                             "grown": sum(done.grown), "new": int(sum(int(n.sum()) for n in done.new)),
                             "sparsity": self.masks.sparsity(),
                             "dropped_layer": dict(zip(self.masks.names, done.dropped))}
        log.debug("mask update at step %d: %d dropped and regrown", at + 1, sum(done.dropped))

    def _check_finite(self, epoch: int, train_loss: float, lr: float) -> None:
        """TrainingDiverged when the loss or a weight is not finite; called before every checkpoint, so the
        one on disk always holds finite weights."""
        norms = torch._foreach_norm([p.detach() for p in self.model.parameters()])
        weights_ok = bool(torch.isfinite(torch.stack(norms)).all())
        if math.isfinite(train_loss) and weights_ok:
            return
        what = f"train loss is {train_loss}" if not math.isfinite(train_loss) else "weights are not finite"
        kept = f"; the checkpoint after {self._saved} is kept" if self._saved else ""
        raise TrainingDiverged(f"training diverged in epoch {epoch}: {what} (optim.lr={lr:g}): lower"
                               f" optim.lr, or the method's noise or regulariser{kept}")

    def _apply_due_events(self, state: TrainState, at_step: int, test_acc: float | None) -> None:
        """The schedule's events due by ``at_step``; at an epoch's end, then the method's own prune."""
        while state.events_done < len(self.events) and self.events[state.events_done].step <= at_step:
            ev = self.events[state.events_done]
            self._prune(state, at_step, test_acc, ev.sparsity, self.budget, ev.count, ev.fraction)
            state.events_done += 1
        own = self.method.prune_due(state.epoch) if test_acc is not None else None
        if own is not None:
            self._prune(state, at_step, test_acc, *own)

    def _prune(self, state: TrainState, at_step: int, test_acc: float | None, sparsity: float, budget: Any,
               count: str = "exact", fraction: float | None = None) -> None:
        """The one prune path: masks to ``sparsity`` (the count rounded as ``count`` says: see
        budgets.event_zeros), a curve point, a prune record."""
        before = self.masks.sparsity()
        if test_acc is not None:
            state.curve.append({"epoch": state.epoch, "sparsity": before, "test_acc": test_acc})
        removed = prune_to(self.method.scores(self.model), self.masks, sparsity, budget, count, fraction,
                           self.pattern)
        self.method.after_prune()
        rec = {"type": "prune", "epoch": state.epoch, "step": at_step, "sparsity_before": before,
               "sparsity": self.masks.sparsity(), "target": sparsity, "removed": removed,
               "test_acc_before": test_acc,
               # per-layer kept weights: the training multiply-adds are counted from them (analysis/compute.py)
               "kept": dict(zip(self.masks.names, self.masks.nonzero_counts()))}
        log.info("prune at epoch %d (step %d): sparsity %.5f -> %.5f", state.epoch, at_step, before,
                 rec["sparsity"])
        self.on_prune(rec, state)


@torch.no_grad()
def reset_optimizer_state(optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                          new: list[torch.Tensor]) -> None:
    """Zero every per-weight optimizer state (SGD's momentum buffer, AdamW's moments) at the ``new`` entries:
    a grown weight starts without momentum (RigL's reset_momentum, rigl/sparse_optimizers_base.py:345-353)."""
    for p, n in zip(params, new):
        for value in optimizer.state.get(p, {}).values():
            if torch.is_tensor(value) and value.shape == p.shape:
                value.masked_fill_(n, 0)


def position(state: TrainState) -> str:
    """Where ``state`` stands, in the words of the stop, resume and divergence messages alike:
    ``step 80 (end of epoch 2)``, or ``step 95 (epoch 3, batch 15)`` in the middle of one."""
    if not state.batch:
        return f"step {state.step} (end of epoch {state.epoch})"
    return f"step {state.step} (epoch {state.epoch + 1}, batch {state.batch})"
