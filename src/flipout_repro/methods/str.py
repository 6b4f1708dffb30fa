"""STR, Soft Threshold Reparameterization (Kusupati et al. 2020).

Every prunable layer computes with ``W_hat = sign(W) * relu(|W| - sigmoid(s))`` instead of W, with one
learnable scalar ``s`` per layer (init ``s_init``). W and s are trained together by the run's SGD; its
coupled weight decay applies to s too (as in the STR code without ``st_decay``), which drives s up and
makes sparsity appear.

``s_init`` defaults to -3200, the STR code's value for its 90.23 % ResNet50 (RAIVNLab/STR
configs/largescale/resnet50-str.yaml:30, ``sInit_value: -3200``): sigmoid(-3200) is exactly 0 in fp32,
so training starts dense (W_hat = W) and sigmoid'(s) is 0 too, so at first only the weight decay moves
s (s <- s (1 - lr wd) per plain SGD step) until sigmoid(s) is large enough to zero weights. The paper's
appendix gives s_init and weight decay per sparsity level; for CIFAR the authors advise about -100 and a
weight decay above 5e-4 (RAIVNLab/STR issue 2). At -5, sigmoid(s) already zeroes about 40 % of VGG19's
weights before the first step. ``s_weight_decay`` gives s its own decay (STR's ``st_decay``): the difference to
``optim_weight_decay`` (interpolated from ``optim.weight_decay``, do not set) is added to s's gradient.

The reparameterisation is a ``torch.nn.utils.parametrize`` parametrization of each layer's ``weight``;
the raw W stays the very Parameter the masks and the optimizer hold. Training is unmasked (a weight
under the threshold may come back when the threshold drops); after each epoch the masks are set to
``W_hat != 0`` only to report the sparsity. After the last epoch's evaluation the loop prunes exactly
the zeros of W_hat (``prune_due``, through the loop's prune path, so it is recorded as a prune event),
and the parametrizations are removed with W set to W_hat (the bake): the checkpoint, masks.pt and the
summary all see the thresholded weights (the evaluation before saw the same function), and the model is a plain
model again (its state dict has the usual keys, so any tool can load it). A checkpoint written after
that is loaded into a freshly bound model by removing its parametrizations first (a load hook).
The sparsity is an outcome of ``s_init`` and the weight decay (``sparsity_is_outcome``); the
``sparsity`` key is only recorded.
With a schedule other than ``none`` the effective weights' magnitudes are the scores, and the events'
masks are applied on top.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from flipout_repro.sparsity.masking import PRUNABLE_TYPES, Masks
from flipout_repro.methods.base import Method


def soft_threshold(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """sign(w) * relu(|w| - sigmoid(s))."""
    return torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(s))


class SoftThreshold(nn.Module):
    """The parametrization W -> sign(W) relu(|W| - sigmoid(s)); identity once ``baked``."""

    def __init__(self, s_init: float) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(float(s_init)))
        self.baked = False  # a plain attribute: checking it costs no host sync

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """The effective weight."""
        return w if self.baked else soft_threshold(w, self.s)


class STR(Method):
    """Soft threshold reparameterisation of every Conv2d/Linear weight; sparsity is learnt."""

    sparsity_is_outcome = True
    any_budget = False  # the learnt thresholds set each layer's sparsity

    def __init__(self, name: str = "str", s_init: float = -3200.0,
                 s_weight_decay: float | None = None, optim_weight_decay: float = 0.0) -> None:
        super().__init__(name)
        if s_weight_decay is not None and s_weight_decay < 0:
            raise ValueError(f"method.s_weight_decay={s_weight_decay} must be >= 0, or null for optim.weight_decay")
        self.s_init = float(s_init)
        self.s_weight_decay = s_weight_decay
        self.optim_weight_decay = float(optim_weight_decay)
        self.parts: list[SoftThreshold] = []
        self._epochs = 0
        self._baking = False

    def bind(self, model: nn.Module, masks: Masks) -> None:
        """Register the parametrization on every prunable layer (before the optimizer is built)."""
        super().bind(model, masks)
        self.parts = []
        for name, module in model.named_modules():
            if isinstance(module, PRUNABLE_TYPES):
                assert module.weight is masks.params[len(self.parts)], f"{name}: layer order differs from masks"
                part = SoftThreshold(self.s_init).to(module.weight.device)
                parametrize.register_parametrization(module, "weight", part)
                module.register_load_state_dict_pre_hook(_unbake_on_plain_load)
                self.parts.append(part)

    def on_train_start(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], target: float,
                       epochs: int, steps_per_epoch: int) -> None:
        """Remember the last epoch (the one after which the weights are baked)."""
        self._epochs = epochs

    def after_backward(self, model: nn.Module) -> None:
        """s's own weight decay, when ``s_weight_decay`` is set (coupled, like the optimizer's)."""
        if self.s_weight_decay is None:
            return
        extra = self.s_weight_decay - self.optim_weight_decay
        for part in self.parts:
            if part.s.grad is not None:
                part.s.grad.add_(part.s.detach(), alpha=extra)

    @torch.no_grad()
    def effective_weights(self) -> list[torch.Tensor]:
        """W_hat of every prunable layer (W itself once baked)."""
        return [part(w) for part, w in zip(self.parts, self.masks.params)]

    @torch.no_grad()
    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """|W_hat|, for schedules combined with STR."""
        return [w.abs() for w in self.effective_weights()]

    @torch.no_grad()
    def on_epoch_end(self, epoch: int) -> None:
        """Until the bake, the masks only report where W_hat is zero (they are not applied: training
        stays the reparameterised network's)."""
        if self.parts[0].baked or self.masks.active:
            return
        for m, w in zip(self.masks.values, self.effective_weights()):
            m.copy_(w != 0)

    @torch.no_grad()
    def prune_due(self, epoch: int) -> tuple[float, str] | None:
        """After the last epoch: prune exactly the weights whose W_hat is zero (scores are |W_hat|), then
        :meth:`after_prune` bakes W_hat into W."""
        if epoch < self._epochs or self.parts[0].baked:
            return None
        zeros = sum(int((w == 0).sum()) for w in self.effective_weights())
        self._baking = True
        return zeros / self.masks.total(), "global"

    def after_prune(self) -> None:
        """After its own prune (not a scheduled one): bake, W becomes W_hat (the same Parameter objects,
        so masks and optimizer stay attached)."""
        if not self._baking:
            return
        self._baking = False
        for module in self.model.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        for part in self.parts:
            part.baked = True
        self.masks.apply_to_weights()

    @torch.no_grad()
    def epoch_stats(self) -> dict[str, float]:
        """Each layer's threshold sigmoid(s)."""
        ths = torch.stack([torch.sigmoid(p.s.detach()) for p in self.parts]).tolist()
        return {f"str_threshold.{n}": t for n, t in zip(self.masks.names, ths)}

    def state_dict(self) -> dict[str, Any]:
        """The number of epochs and whether W_hat is baked (s itself is in the model's state)."""
        return {"epochs": self._epochs, "baked": bool(self.parts and self.parts[0].baked)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._epochs = int(state["epochs"])
        for part in self.parts:
            part.baked = bool(state["baked"])


def _unbake_on_plain_load(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Loading a baked model's plain ``weight`` into a parametrized layer: drop the parametrization."""
    if parametrize.is_parametrized(module, "weight") and prefix + "weight" in state_dict \
            and prefix + "parametrizations.weight.original" not in state_dict:
        module.parametrizations.weight[0].baked = True
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
