"""Dynamic sparse training: SET (Mocanu et al. 2018) and RigL (Evci et al. 2020).

The network is sparse from the first step: the method's yaml selects the ``one_shot`` schedule at
epoch 0, whose event prunes to the target with uniform random scores (``scores``), through the normal
prune path and the run's layer budget (``budget=uniform``, the method's default, keeps every layer at the
target: the reference code's default ``mask_init_method=random``, rigl/cifar_resnet/resnet_train_eval.py:122-127).

Then, at every step index ``s`` with ``s % update_every == 0`` and ``s <= T_end`` (``T_end`` =
``floor(stop * total steps)``; the reference updates at global steps 0, ΔT, ... up to its end step
inclusive, rigl/sparse_optimizers_base.py:164-171 and :216-227), each layer drops
``floor(alpha_s * active)`` of its active weights of smallest ``|w|`` (:284-290) and grows as many:

- SET: at random (uniform scores, :271-274), after the step's optimizer update (:133-146);
- RigL: where the step batch's dense gradient ``|g|`` is largest (:535-538); the update takes the
  place of that step's optimizer update (:508-521: ``cond(update, mask_update, apply_gradients)``).

``alpha_s = drop_fraction * (1 + cos(pi * s / T_end)) / 2`` (the ``cosine`` anneal, :236-242; the
paper's section 3). Grown weights start at 0 (``grow_init=zeros``) and their optimizer state (SGD's
momentum) is zeroed (:336-353, RigL's ``initial_acc_scale`` 0); the loop does both through
masking.drop_and_grow. ``regrow_dropped`` (the reference: true) lets a weight dropped in an update grow
back in the same update, keeping its value and momentum.

Differences from the reference, all small: ties break by position instead of by N(0, 1e-5) noise added
to the drop scores (:264-270); the reference's RigL does not count its update iterations as steps
(global_step is not incremented), ours does (the run takes ``T_end / update_every`` fewer optimizer
steps: 0.8 % of them at ΔT = 100).

Over the run the method records the share of weights that were ever active (RigL's "in-time
over-parameterisation", Liu et al. 2021): ``ever_active`` in every epoch record and in summary.json.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks, Regrowth
from flipout_repro.methods.base import MaskUpdate, Method


class DynamicSparse(Method):
    """Drop by magnitude, grow by ``grow_scores``, every ``update_every`` steps until ``stop`` of training.

    Subclasses set :attr:`replaces` (whether an update takes the place of its step's optimizer update)
    and :meth:`grow_scores`.
    """

    replaces: bool = False
    any_pattern = False  # drop_and_grow regrows anywhere in a layer, so an N:M pattern would not hold

    def __init__(self, name: str, update_every: int = 100, drop_fraction: float = 0.3,
                 stop: float = 0.75, regrow_dropped: bool = True) -> None:
        super().__init__(name)
        if not isinstance(update_every, int) or isinstance(update_every, bool) or update_every < 1:
            raise ValueError(f"method.update_every={update_every!r} must be an integer >= 1: steps between mask"
                             " updates, e.g. method.update_every=100 (RigL's)")
        if not 0 < drop_fraction < 1:
            raise ValueError(f"method.drop_fraction={drop_fraction!r} must be in (0, 1): the share of each layer's"
                             " active weights replaced at the first update, e.g. method.drop_fraction=0.3 (RigL's)")
        if not 0 < stop <= 1:
            raise ValueError(f"method.stop={stop!r} must be in (0, 1]: the fraction of training after which the"
                             " masks stay fixed, e.g. method.stop=0.75 (RigL's)")
        self.update_every = update_every
        self.drop_fraction = float(drop_fraction)
        self.stop = float(stop)
        self.regrow_dropped = bool(regrow_dropped)
        self.end_step = 0
        self.updates = 0
        self.ever: list[torch.Tensor] = []

    def bind(self, model: nn.Module, masks: Masks) -> None:
        """Nothing has been active yet (the dense phase before the first prune does not count)."""
        super().bind(model, masks)
        self.ever = [torch.zeros_like(m, dtype=torch.bool) for m in masks.values]

    def on_train_start(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], target: float,
                       epochs: int, steps_per_epoch: int) -> None:
        """T_end from the run's length (kept in the state: a resumed run does not call this)."""
        self.end_step = int(math.floor(self.stop * epochs * steps_per_epoch))

    @torch.no_grad()
    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """U(0, 1) per weight: the initial mask is random (torch's global generator, seeded by the run)."""
        return [torch.rand(p.shape, device=p.device) for p in self.masks.params]

    def drop_fraction_at(self, step: int) -> float:
        """alpha_s = drop_fraction * (1 + cos(pi * s / T_end)) / 2 (0 from T_end on)."""
        if self.end_step <= 0:
            return 0.0
        return self.drop_fraction * 0.5 * (1 + math.cos(math.pi * min(step, self.end_step) / self.end_step))

    def due(self, step: int) -> bool:
        """Whether step ``step`` (0-based) updates the masks."""
        return self.masks.active and step <= self.end_step and step % self.update_every == 0

    def replaces_step(self, step: int) -> bool:
        """RigL: the update step has no optimizer update."""
        return self.replaces and self.due(step)

    def grow_scores(self) -> list[torch.Tensor]:
        """Per-weight grow scores (higher = grow first)."""
        raise NotImplementedError

    @torch.no_grad()
    def mask_update(self, step: int) -> MaskUpdate | None:
        """Drop floor(alpha_s * active) per layer by |w|, grow as many by :meth:`grow_scores`; none in the
        layers the budget keeps dense (``budget.dense_first``/``dense_last``), which are not sparse."""
        if not self.due(step):
            return None
        alpha = self.drop_fraction_at(step)
        dense = self.budget.dense(len(self.masks.names))
        counts = [0 if i in dense else int(math.floor(alpha * n)) for i, n in enumerate(self.masks.nonzero_counts())]
        drop = [p.detach().abs() for p in self.masks.params]
        return MaskUpdate(drop, self.grow_scores(), counts, self.regrow_dropped, {"drop_fraction": alpha})

    @torch.no_grad()
    def _track(self) -> None:
        for e, m in zip(self.ever, self.masks.values):
            e |= m.bool()

    def after_prune(self) -> None:
        """The initial mask is the first set of active weights."""
        self._track()

    def after_mask_update(self, result: Regrowth) -> None:
        """Grown weights join the ever-active set."""
        self._track()
        self.updates += 1

    def ever_active(self) -> float:
        """Share of prunable weights active at some point since the first prune (one host sync)."""
        return float(torch.stack([e.sum() for e in self.ever]).sum()) / self.masks.total()

    def epoch_stats(self) -> dict[str, float]:
        """The ever-active share so far."""
        return {"ever_active": self.ever_active()}

    def summary_stats(self) -> dict[str, Any]:
        """The ever-active share at the end and the number of mask updates."""
        return {"ever_active": self.ever_active(), "mask_updates": self.updates}

    def state_dict(self) -> dict[str, Any]:
        """Ever-active masks, T_end and the update count."""
        return {"ever": [e.cpu() for e in self.ever], "end_step": self.end_step, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for dst, src in zip(self.ever, state["ever"]):
            dst.copy_(src)
        self.end_step, self.updates = int(state["end_step"]), int(state["updates"])


class SET(DynamicSparse):
    """SET (Mocanu et al. 2018): regrow at random, after the step's optimizer update."""

    def __init__(self, name: str = "set", update_every: int = 100, drop_fraction: float = 0.3,
                 stop: float = 0.75, regrow_dropped: bool = True) -> None:
        super().__init__(name, update_every, drop_fraction, stop, regrow_dropped)

    @torch.no_grad()
    def grow_scores(self) -> list[torch.Tensor]:
        """U(0, 1) per weight (torch's global generator)."""
        return [torch.rand(p.shape, device=p.device) for p in self.masks.params]


class RigL(DynamicSparse):
    """RigL (Evci et al. 2020): regrow where the dense gradient of the step's batch is largest; the update
    replaces that step's optimizer update."""

    replaces = True

    def __init__(self, name: str = "rigl", update_every: int = 100, drop_fraction: float = 0.3,
                 stop: float = 0.75, regrow_dropped: bool = True) -> None:
        super().__init__(name, update_every, drop_fraction, stop, regrow_dropped)

    @torch.no_grad()
    def grow_scores(self) -> list[torch.Tensor]:
        """|dL/dw| of the step's batch for every weight (pruned ones included: the loop leaves it dense)."""
        return [p.grad.detach().abs() if p.grad is not None else torch.zeros_like(p) for p in self.masks.params]
