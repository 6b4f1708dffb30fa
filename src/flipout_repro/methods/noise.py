"""Gradient noise scaled to each parameter's gradient norm (FlipOut paper, METHODS.md step 3)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def add_gradient_noise(params: list[nn.Parameter], scale: float) -> None:
    """theta.grad += scale * (||theta.grad||_2 / sqrt(numel theta)) * N(0, I), for every parameter.

    One Gaussian draw covers all gradients (a single kernel instead of one per parameter), the norms
    come from one fused ``_foreach_norm``, and nothing leaves the device (no host sync). Noise is drawn
    from torch's global generator, which the run seeds.
    """
    if scale == 0:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    sizes = [g.numel() for g in grads]
    total = sum(sizes)
    dev, dtype = grads[0].device, grads[0].dtype
    coefs = torch.stack(torch._foreach_norm(grads)).to(dtype)
    coefs *= torch.tensor([scale / n ** 0.5 for n in sizes], device=dev, dtype=dtype)
    noise = torch.randn(total, device=dev, dtype=dtype)
    noise *= torch.repeat_interleave(coefs, torch.tensor(sizes, device=dev), output_size=total)
    torch._foreach_add_(grads, [c.view(g.shape) for c, g in zip(noise.split(sizes), grads)])
