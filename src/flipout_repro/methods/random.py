"""Random pruning: uniform among the surviving weights."""
from __future__ import annotations

import torch
from torch import nn

from flipout_repro.methods.base import Method


class Random(Method):
    """Uniform random scores, drawn from torch's global generator (seeded by the run)."""

    def __init__(self, name: str = "random") -> None:
        super().__init__(name)

    @torch.no_grad()
    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """U(0, 1) per weight: every surviving weight is equally likely to go."""
        return [torch.rand(p.shape, device=p.device) for p in self.masks.params]
