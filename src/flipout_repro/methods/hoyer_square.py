"""Hoyer-Square (Yang, Wen, Li 2020, "DeepHoyer"), as the FlipOut paper uses it (docs/fidelity.md, FlipOut).

Training loss += ``lam * sum_theta (sum|theta|)^2 / sum theta^2`` over every trainable parameter (biases
and BatchNorm included, as in the FlipOut code; a parameter that is all zero adds 0), for the epochs
up to ``stop_epoch``. At the end of that epoch the method prunes, and the rest of training is masked
fine-tuning (the loop keeps pruned weights at zero):

- ``mode=paper``: hard threshold, every prunable weight with ``|w| < threshold`` (1e-4) is pruned. The
  sparsity is an outcome of ``lam`` (``sparsity_is_outcome``); the ``sparsity`` key is only recorded.
- ``mode=target`` (our extension): magnitude pruning to exactly ``sparsity`` at that epoch (global, or per layer
  with ``budget=uniform``).

Group-HS (``group`` = out | in | both), the structured variant: for each prunable weight viewed as
(out, in, k), groups are the filters / rows (``out``), the input channels / columns (``in``), or both
(the two penalties added): ``(sum_g ||w_g||)^2 / sum_g ||w_g||^2``. Our choices for it: only the
prunable weights are regularised (``params=prunable`` is required), and a weight's score is the norm
of its group (the smaller of the two for ``both``), so the threshold and the target prune whole groups.

``stop_epoch`` is an epoch of a ``stop_of``-epoch run (the paper: 350 of 500) and is scaled to
``epochs``, like the optimizer's milestones, so short runs keep the paper's shape. How many weights end
under the threshold depends strongly on the learning rate at the stop epoch (SGD keeps small weights
oscillating with an amplitude ~ lr * lam): the FlipOut runs train 500 epochs with the lr dropped at
epochs 150 and 250 (not scaled), i.e. lr 0.001 at the threshold; here that is
``optim.milestones=[150,250] optim.milestones_of=500``. The prune happens in
``on_epoch_end``, so the evaluation logged for the stop epoch is already after it. Its scores (|w|, or
group norms) also let it run with any schedule (``schedule=cubic``), on top of its own prune.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks
from flipout_repro.methods.base import Method

log = logging.getLogger("flipout_repro")
MODES = ("paper", "target")
GROUPS = ("none", "out", "in", "both")
PARAMS = ("all", "prunable")


def hoyer_square(tensors: list[torch.Tensor]) -> torch.Tensor:
    """sum over tensors of (sum|t|)^2 / sum t^2; an all-zero tensor adds 0 (no division by zero)."""
    tiny = torch.finfo(torch.float32).tiny
    terms = [t.abs().sum().square() / t.square().sum().clamp_min(tiny) for t in tensors]
    return torch.stack(terms).sum()


def group_norms(w: torch.Tensor, axis: str) -> torch.Tensor:
    """L2 norms of the groups of ``w`` viewed as (out, in, k): per output (``out``) or input (``in``)."""
    v = w.reshape(w.shape[0], w.shape[1], -1)
    return torch.linalg.vector_norm(v, dim=(1, 2) if axis == "out" else (0, 2))


def group_hoyer_square(weights: list[torch.Tensor], group: str) -> torch.Tensor:
    """sum over weights and axes of (sum_g ||w_g||)^2 / sum_g ||w_g||^2 (``group`` = out | in | both)."""
    tiny = torch.finfo(torch.float32).tiny
    axes = ("out", "in") if group == "both" else (group,)
    terms = [group_norms(w, a).sum().square() / w.square().sum().clamp_min(tiny) for w in weights for a in axes]
    return torch.stack(terms).sum()


def group_scores(w: torch.Tensor, group: str) -> torch.Tensor:
    """Every weight's group norm, broadcast to ``w``'s shape (the smaller of the two for ``both``)."""
    v = w.reshape(w.shape[0], w.shape[1], -1)
    out = group_norms(w, "out")[:, None, None].expand_as(v)
    inp = group_norms(w, "in")[None, :, None].expand_as(v)
    s = out if group == "out" else inp if group == "in" else torch.minimum(out, inp)
    return s.reshape(w.shape)


class HoyerSquare(Method):
    """The Hoyer-Square regulariser with ``lam`` until ``stop_epoch``, then one prune and fine-tuning."""

    any_budget = False  # its own prune (prune_due: a threshold, or its target): budget global or uniform

    def __init__(self, name: str = "hoyer_square", lam: float = 1e-4,
                 stop_epoch: int = 350, stop_of: int = 500, mode: str = "paper", threshold: float = 1e-4,
                 group: str = "none", params: str = "all") -> None:
        super().__init__(name)
        if lam < 0:
            raise ValueError(f"method.lam={lam} must be >= 0 (the FlipOut paper uses 1e-7 to 1e-3)")
        if not 1 <= stop_of or not 1 <= stop_epoch <= stop_of:
            raise ValueError(f"method.stop_epoch={stop_epoch} must be in [1, method.stop_of={stop_of}]"
                             " (an epoch of a stop_of-epoch run, scaled to epochs; the paper: 350 of 500)")
        if mode not in MODES:
            raise ValueError(f"method.mode={mode!r} must be 'paper' (hard threshold) or 'target' (prune to sparsity)")
        if threshold < 0:
            raise ValueError(f"method.threshold={threshold} must be >= 0 (the paper uses 1e-4)")
        if group not in GROUPS:
            raise ValueError(f"method.group={group!r} must be one of {list(GROUPS)}")
        if params not in PARAMS:
            raise ValueError(f"method.params={params!r} must be 'all' or 'prunable'")
        if group != "none" and params != "prunable":
            raise ValueError(f"method.params={params!r} with method.group={group!r}: Group-HS regularises the"
                             " prunable weights only, set method.params=prunable")
        self.lam, self.threshold, self.mode, self.group, self.params = float(lam), float(threshold), mode, group, params
        self.stop_epoch, self.stop_of = int(stop_epoch), int(stop_of)
        self.sparsity_is_outcome = mode == "paper"
        self._stop = 0  # the scaled stop epoch, set in on_train_start
        self._target = 0.0
        self._epoch = 0  # epochs finished
        self._last: torch.Tensor | None = None

    def bind(self, model: nn.Module, masks: Masks) -> None:
        """Collect the regularised parameters."""
        super().bind(model, masks)
        if self.params == "all":
            self._reg = [p for p in model.parameters() if p.requires_grad]
        else:
            self._reg = list(masks.params)

    def on_train_start(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], target: float,
                       epochs: int, steps_per_epoch: int) -> None:
        """Scale ``stop_epoch`` to the run's epochs; remember the target for ``mode=target``."""
        self._stop = max(1, int(self.stop_epoch * epochs / self.stop_of + 0.5))
        self._target = float(target)
        log.info("%s: regulariser lam=%g until epoch %d of %d, then %s", self.name, self.lam, self._stop, epochs,
                 f"hard threshold {self.threshold:g}" if self.mode == "paper" else f"prune to {target}")

    @property
    def active(self) -> bool:
        """Whether the regulariser is on (epochs 1..stop)."""
        return self._epoch < self._stop and self.lam > 0

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        """lam * HS (or Group-HS) while active, else None."""
        if not self.active:
            return None
        hs = hoyer_square(self._reg) if self.group == "none" else group_hoyer_square(self._reg, self.group)
        self._last = hs.detach()
        return self.lam * hs

    @torch.no_grad()
    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """|w|, or the weight's group norm in the group variant."""
        if self.group == "none":
            return [p.detach().abs() for p in self.masks.params]
        return [group_scores(p.detach(), self.group) for p in self.masks.params]

    def on_epoch_end(self, epoch: int) -> None:
        """Count the epochs (the regulariser is on until the stop epoch)."""
        self._epoch = epoch

    @torch.no_grad()
    def prune_due(self, epoch: int) -> tuple[float, str] | None:
        """After the stop epoch: every weight whose score is below the threshold (paper: a hard threshold,
        so the sparsity is an outcome), or the target sparsity (``mode=target``)."""
        if epoch != self._stop:
            return None
        if self.mode == "target":
            return self._target, self.budget
        scores = self.scores(self.model)
        below = sum(int(((s < self.threshold) | ~m.bool()).sum()) for s, m in zip(scores, self.masks.values))
        log.info("%s: pruning every weight with |score| < %g after epoch %d", self.name, self.threshold, epoch)
        return below / self.masks.total(), "global"

    def epoch_stats(self) -> dict[str, float]:
        """The last penalty value (before lam) while the regulariser is on."""
        return {"hoyer_square": float(self._last)} if self._last is not None and self._epoch <= self._stop else {}

    def state_dict(self) -> dict[str, Any]:
        """The scaled stop epoch, the target and the epochs done."""
        return {"stop": self._stop, "target": self._target, "epoch": self._epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._stop, self._target, self._epoch = int(state["stop"]), float(state["target"]), int(state["epoch"])
