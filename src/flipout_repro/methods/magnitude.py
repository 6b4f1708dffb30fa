"""Magnitude pruning, global or layer-wise, optionally with FlipOut's gradient noise."""
from __future__ import annotations

import torch
from torch import nn

from flipout_repro.methods.base import Method
from flipout_repro.methods.noise import add_gradient_noise, noise_plan


class Magnitude(Method):
    """Score |w|. ``budget=global`` ranks over all layers, ``budget=uniform`` prunes each layer on its own.

    ``noise`` > 0 adds FlipOut's gradient noise (the paper's ``noisy_global_magnitude`` ablation).
    """

    def __init__(self, name: str = "global_magnitude", noise: float = 0.0) -> None:
        super().__init__(name)
        if noise < 0:
            raise ValueError(f"method.noise={noise} must be >= 0 (0 turns the noise off)")
        self.noise = float(noise)

    @property
    def modifies_grads(self) -> bool:
        """Only the noise touches gradients."""
        return self.noise > 0

    def bind(self, model: nn.Module, masks) -> None:
        """Remember the trainable parameters (and noise buffers on a CPU) when the noise is on."""
        super().bind(model, masks)
        self._trainable = [p for p in model.parameters() if p.requires_grad]
        self._noise_plan = noise_plan(self._trainable) if self.noise else None

    def after_backward(self, model: nn.Module) -> None:
        """Gradient noise on every trainable parameter, when enabled."""
        if self.noise:
            add_gradient_noise(self._trainable, self.noise, self._noise_plan)

    @torch.no_grad()
    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """|w| for every prunable weight."""
        return [p.detach().abs() for p in self.masks.params]
