"""Gradient noise scaled to each parameter's gradient norm (FlipOut paper, METHODS.md step 3)."""
from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def add_gradient_noise(params: list[nn.Parameter], scale: float) -> None:
    """theta.grad += scale * (||theta.grad||_2 / sqrt(numel theta)) * N(0, I), for every parameter.

    The norms are computed by one fused ``_foreach_norm`` and stay on the device (no host sync).
    Noise is drawn from torch's global generator, which the run seeds.
    """
    if scale == 0:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    for g, norm in zip(grads, norms):
        coef = norm * (scale / math.sqrt(g.numel()))
        g.addcmul_(torch.randn_like(g), coef.to(g.dtype))
