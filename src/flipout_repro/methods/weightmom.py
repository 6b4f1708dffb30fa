"""WeightMom (Johnson, Tang, Samudrala 2022): gradual pruning by the momentum of the weights.

No public code or full text was found (docs/fidelity.md, "WeightMom"), so this implements the abstract's rule: "weights
are pruned gradually based on their momentum of the previous iterations. Each layer ... is assigned an
importance value based on their relative sparsity, followed by the magnitude of the weight in the
previous iterations." Every concrete choice below is ours and is a knob:

1. Momentum of a weight = an exponential moving average of its magnitude,
   ``a <- beta * a + (1 - beta) * |w|``, updated after every ``update_every``-th optimizer step
   (after the masking), starting from ``a = |w|`` at initialisation. ``beta`` is set from
   ``horizon_epochs`` (the EMA's time constant, in epochs): ``beta = 1 - update_every / (horizon *
   steps_per_epoch)``, so the horizon means the same on every data set. Pruned weights' averages are
   zeroed.
2. Relative sparsity of layer l = its density d_l (kept fraction) against the network's density d.
   Importance ``I_l = (d / d_l) ** layer_importance``: a layer already pruned harder than the network
   as a whole (d_l < d) gets I_l > 1, so its surviving weights are protected (against layer collapse);
   ``layer_importance = 0`` turns this off (plain global ranking of the averages).
3. Score = ``I_l * a``, ranked globally (``budget=uniform``: per layer, where I_l cancels out).
4. Gradual: the method's yaml selects the ``cubic`` schedule (Zhu & Gupta); any schedule works.

The averages use fused foreach ops on a preallocated buffer: no per-step allocation.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks
from flipout_repro.methods.base import Method


class WeightMom(Method):
    """Score = per-layer importance from relative sparsity x moving average of |w|."""

    def __init__(self, name: str = "weightmom", horizon_epochs: float = 1.0,
                 layer_importance: float = 0.5, update_every: int = 1) -> None:
        super().__init__(name)
        if horizon_epochs <= 0:
            raise ValueError(f"method.horizon_epochs={horizon_epochs} must be > 0 (the moving average's time"
                             " constant in epochs, e.g. 1)")
        if layer_importance < 0:
            raise ValueError(f"method.layer_importance={layer_importance} must be >= 0 (0 turns it off)")
        if not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"method.update_every={update_every!r} must be an integer >= 1")
        self.horizon_epochs = float(horizon_epochs)
        self.layer_importance = float(layer_importance)
        self.update_every = update_every
        self.beta = 0.0
        self._steps = 0
        self.avg: list[torch.Tensor] = []
        self._buf: list[torch.Tensor] = []

    def bind(self, model: nn.Module, masks: Masks) -> None:
        """Averages start at |w| of the initial weights."""
        super().bind(model, masks)
        self.avg = [p.detach().abs().float() for p in masks.params]
        self._buf = [torch.empty_like(a) for a in self.avg]

    def on_train_start(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], target: float,
                       epochs: int, steps_per_epoch: int) -> None:
        """beta from the horizon in epochs."""
        self.beta = max(0.0, 1.0 - self.update_every / (self.horizon_epochs * steps_per_epoch))

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """a <- beta a + (1 - beta) |w| every ``update_every`` steps."""
        self._steps += 1
        if self._steps % self.update_every:
            return
        torch._foreach_copy_(self._buf, [p.detach() for p in self.masks.params])
        torch._foreach_abs_(self._buf)
        torch._foreach_lerp_(self.avg, self._buf, 1.0 - self.beta)

    @torch.no_grad()
    def importance(self) -> list[torch.Tensor]:
        """I_l = (d / d_l) ** layer_importance, one 0-d tensor per layer (on the device, no sync)."""
        kept = [m.sum() for m in self.masks.values]
        d = torch.stack(kept).sum() / self.masks.total()
        return [(d / (k / m.numel()).clamp_min(1.0 / m.numel())) ** self.layer_importance
                for k, m in zip(kept, self.masks.values)]

    @torch.no_grad()
    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """I_l * a for every prunable weight."""
        return [a * i for a, i in zip(self.avg, self.importance())]

    @torch.no_grad()
    def after_prune(self) -> None:
        """Pruned weights' averages drop to zero."""
        torch._foreach_mul_(self.avg, [m.float() for m in self.masks.values])

    def state_dict(self) -> dict[str, Any]:
        """Averages, beta and the step count."""
        return {"avg": [a.cpu() for a in self.avg], "beta": self.beta, "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for dst, src in zip(self.avg, state["avg"]):
            dst.copy_(src)
        self.beta, self._steps = float(state["beta"]), int(state["steps"])
