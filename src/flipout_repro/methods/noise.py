"""Gradient noise scaled to each parameter's gradient norm (FlipOut paper, METHODS.md step 3)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def add_gradient_noise(params: list[nn.Parameter], scale: float,
                       buffers: list[torch.Tensor] | None = None) -> None:
    """theta.grad += scale * (||theta.grad||_2 / sqrt(numel theta)) * N(0, I), for every parameter.

    The norms come from one fused ``_foreach_norm`` and nothing leaves the device (no host sync). Noise
    is drawn from torch's global generator, which the run seeds. Without ``buffers`` (GPU) one Gaussian
    draw covers all gradients: a single kernel instead of one per parameter. With ``buffers`` (one per
    parameter, e.g. from :func:`noise_buffers`; CPU) each parameter's noise is drawn into its buffer, so
    a step allocates no weight-sized memory.
    """
    if scale == 0:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if buffers is not None:
        bufs = [b for p, b in zip(params, buffers) if p.grad is not None]
        for g, norm, buf in zip(grads, torch._foreach_norm(grads), bufs):
            torch.randn(buf.shape, out=buf)
            g.add_(buf.mul_(norm * (scale / g.numel() ** 0.5)))
        return
    sizes = [g.numel() for g in grads]
    total = sum(sizes)
    dev, dtype = grads[0].device, grads[0].dtype
    coefs = torch.stack(torch._foreach_norm(grads)).to(dtype)
    coefs *= torch.tensor([scale / n ** 0.5 for n in sizes], device=dev, dtype=dtype)
    noise = torch.randn(total, device=dev, dtype=dtype)
    noise *= torch.repeat_interleave(coefs, torch.tensor(sizes, device=dev), output_size=total)
    torch._foreach_add_(grads, [c.view(g.shape) for c, g in zip(noise.split(sizes), grads)])


def noise_buffers(params: list[nn.Parameter]) -> list[torch.Tensor] | None:
    """Preallocated noise buffers on a CPU (where fresh weight-sized tensors are costly), else None."""
    if params and params[0].device.type == "cpu":
        return [torch.empty_like(p, memory_format=torch.contiguous_format) for p in params]
    return None
