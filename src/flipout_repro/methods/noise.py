"""Gradient noise scaled to each parameter's gradient norm (FlipOut paper; step 3 in methods/flipout.py)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class NoisePlan:
    """What :func:`add_gradient_noise` needs besides the gradients, built once per run.

    On a CPU, ``buffers``: one preallocated buffer per parameter, so that a step allocates no
    weight-sized memory. On a GPU, the one-draw path's per-parameter constants (sizes and
    1/sqrt(numel)) as device tensors, so that a step copies nothing from the host: a host-to-device copy
    would wait for the queued backward pass, a host sync in every step.
    """

    buffers: list[torch.Tensor] | None = None
    sizes: list[int] | None = None
    counts: torch.Tensor | None = None
    inv_sqrt_numel: torch.Tensor | None = None


def noise_plan(params: list[nn.Parameter], flat: bool | None = None) -> NoisePlan:
    """The plan for ``params``: per-parameter buffers on a CPU, the one-draw constants elsewhere
    (``flat=True``/``False`` forces one or the other, e.g. to test the GPU path on a CPU)."""
    if not params:
        return NoisePlan()
    if flat is None:
        flat = params[0].device.type != "cpu"
    if not flat:
        return NoisePlan(buffers=[torch.empty_like(p, memory_format=torch.contiguous_format) for p in params])
    sizes = [p.numel() for p in params]
    dev, dtype = params[0].device, params[0].dtype
    return NoisePlan(sizes=sizes, counts=torch.tensor(sizes, device=dev),
                     inv_sqrt_numel=torch.tensor([n ** -0.5 for n in sizes], device=dev, dtype=dtype))


@torch.no_grad()
def add_gradient_noise(params: list[nn.Parameter], scale: float, plan: NoisePlan | None = None) -> None:
    """theta.grad += scale * (||theta.grad||_2 / sqrt(numel theta)) * N(0, I), for every parameter.

    The norms come from one fused ``_foreach_norm`` and nothing leaves the device. Noise is drawn from
    torch's global generator, which the run seeds. With a plan that has buffers (CPU) each parameter's
    noise is drawn into its buffer; otherwise one Gaussian draw covers all gradients (a single kernel
    instead of one per parameter), scaled per parameter by the plan's constants. Without a plan the
    constants are made on the fly (tests, one-off calls).
    """
    if scale == 0:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if plan is not None and plan.buffers is not None:
        bufs = [b for p, b in zip(params, plan.buffers) if p.grad is not None]
        for g, norm, buf in zip(grads, torch._foreach_norm(grads), bufs):
            torch.randn(buf.shape, out=buf)
            g.add_(buf.mul_(norm * (scale / g.numel() ** 0.5)))
        return
    if plan is None or plan.sizes is None or len(grads) != len(plan.sizes):
        plan = noise_plan(grads, flat=True)  # no plan, or a parameter without a gradient this step
    dev, dtype = grads[0].device, grads[0].dtype
    total = sum(plan.sizes)
    coefs = torch.stack(torch._foreach_norm(grads)).to(dtype)
    coefs *= plan.inv_sqrt_numel
    coefs *= scale
    noise = torch.randn(total, device=dev, dtype=dtype)
    noise *= torch.repeat_interleave(coefs, plan.counts, output_size=total)
    torch._foreach_add_(grads, [c.view(g.shape) for c, g in zip(noise.split(plan.sizes), grads)])
