"""Per-layer accounting of a pruned network: kept weights, multiply-adds, dead units, collapsed layers.

Multiply-adds (MACs; what pruning papers usually call FLOPs) are counted for the prunable layers only,
for one input of ``input_shape``: a Conv2d does one multiply-add per weight per output position
(``weight.numel() * H_out * W_out``, groups included since the weight holds ``in/groups`` channels), a
Linear one per weight per output row. A pruned weight does no work, so the sparse count uses the kept
weights. Biases, BatchNorm, activations and pooling are left out (they are the same dense or sparse).

A unit is *dead* in a layer when every weight into it (an output channel or neuron: its row of the
mask) or every weight out of it (an input channel or feature: its column) was pruned. A layer with no
weight left is *collapsed*: no signal crosses it, and the network predicts a constant (the reason SNIP
and random pruning fall to chance accuracy at 99.9 %).

A kept weight is *effective* (Vysogorets & Kempe, "Connectivity matters", JMLR 2023) when some path from
the input to the output runs through it; the others carry no signal, however they are trained, so a
network's *effective sparsity* (the pruned share of its prunable weights once those are counted as pruned
too) is at least its nominal one. :func:`effective_masks` finds them on the network itself, whatever its
wiring (residual additions, concatenations, grouped convolutions): in a copy in float64 and evaluation
mode, every kept weight is set to 1/fan-in, every pruned one to 0, every bias and BatchNorm shift and
running mean to 0 and every other entry to 1, max pooling is replaced by average pooling (a max of equal
values reads only one input of its window, but any of them can be the maximum), and one all-ones input is
passed through. Every activation is then positive exactly where a path from the input arrives, so the
gradient of the summed output with respect to a kept weight is non-zero exactly when a path from the input
reaches the weight and one from the weight reaches the output. Pooling written as a function call in a
model's ``forward`` (not a module) cannot be replaced: the models here use modules.
"""
from __future__ import annotations

from typing import Any

import copy

import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks


def dead_units(mask: torch.Tensor, groups: int = 1) -> tuple[int, int]:
    """(dead outputs, dead inputs) of one Conv2d or Linear mask (out, in/groups, ...).

    An output unit is dead when its whole row is pruned; an input unit when no kept weight reads it
    (for grouped convs, the input channels of group ``g`` feed only that group's output channels).
    """
    kept = mask.detach().bool()
    out_units = kept.shape[0]
    dead_out = int((~kept.reshape(out_units, -1).any(dim=1)).sum())
    # (groups, out/groups, in/groups, k) -> is input channel i of group g read by any kept weight?
    per_group = kept.reshape(groups, out_units // groups, kept.shape[1], -1)
    read = per_group.any(dim=3).any(dim=1)  # (groups, in/groups)
    dead_in = int((~read).sum())
    return dead_out, dead_in


def output_positions(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Output positions per call of each prunable layer (H_out * W_out for a conv, rows for a Linear),
    summed over calls, from one forward pass of a single zero input of ``input_shape`` (C, H, W)."""
    positions: dict[str, int] = {}
    hooks = []

    def record(name: str):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            n = output[0].numel() // output.shape[1] if isinstance(module, nn.Conv2d) else \
                output[0].numel() // output.shape[-1]
            positions[name] = positions.get(name, 0) + n
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(record(f"{name}.weight" if name else "weight")))
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()  # no BatchNorm statistics are touched
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return positions


#: the pooling a copy for connectivity replaces (a max reads one input of its window; an average all)
_POOLS = {nn.MaxPool1d: lambda m: nn.AvgPool1d(m.kernel_size, m.stride, m.padding, m.ceil_mode),
          nn.MaxPool2d: lambda m: nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode),
          nn.MaxPool3d: lambda m: nn.AvgPool3d(m.kernel_size, m.stride, m.padding, m.ceil_mode),
          nn.AdaptiveMaxPool1d: lambda m: nn.AdaptiveAvgPool1d(m.output_size),
          nn.AdaptiveMaxPool2d: lambda m: nn.AdaptiveAvgPool2d(m.output_size),
          nn.AdaptiveMaxPool3d: lambda m: nn.AdaptiveAvgPool3d(m.output_size)}


def _average_pools(net: nn.Module) -> None:
    """Every max pooling module of ``net`` replaced, in place, by the average pooling of the same window."""
    for name, module in list(net.named_children()):
        make = _POOLS.get(type(module))
        if make is not None:
            setattr(net, name, make(module))
        else:
            _average_pools(module)


def effective_masks(model: nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> list[torch.Tensor]:
    """For each mask of ``masks``, the kept weights on a path from the input to the output (bool), as
    the module docstring says; ``model`` itself is not changed."""
    net = copy.deepcopy(model).eval()
    _average_pools(net)
    net.double()
    named = dict(net.named_parameters())
    weights = [named[name] for name in masks.names]
    with torch.no_grad():
        for name, t in [*net.named_parameters(), *net.named_buffers()]:
            if t.is_floating_point():
                leaf = name.rsplit(".", 1)[-1]
                t.fill_(0.0 if leaf in ("bias", "running_mean") else 1.0)
        for w, m in zip(weights, masks.values):
            w.copy_(m.to(w) / max(w[0].numel(), 1))  # 1/fan-in keeps every activation at most a few
    for p in net.parameters():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=weights[0].device)
    grads = torch.autograd.grad(net(x).sum(), weights, allow_unused=True)
    return [m.bool() & (g != 0) if g is not None else torch.zeros_like(m, dtype=torch.bool)
            for m, g in zip(masks.values, grads)]


def layer_report(model: nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Per-layer and total weights, sparsity, multiply-adds, dead units and collapse for ``masks``.

    Returns ``{"layers": {name: {...}}, "prunable", "remaining", "sparsity", "effective",
    "effective_sparsity", "macs_dense", "macs_sparse", "collapsed_layers": [names]}`` (``effective``: the
    kept weights on an input-output path, :func:`effective_masks`). A layer the forward pass never reached has
    ``macs_dense`` 0 and ``"reached": False``.
    """
    positions = output_positions(model, tuple(input_shape))
    modules = dict(model.named_modules())
    kept_counts = masks.nonzero_counts()
    effective = [int(e.sum()) for e in effective_masks(model, masks, tuple(input_shape))]
    layers: dict[str, dict[str, Any]] = {}
    for name, mask, kept, used in zip(masks.names, masks.values, kept_counts, effective):
        module = modules[name.rsplit(".", 1)[0]] if "." in name else model
        groups = getattr(module, "groups", 1)
        dead_out, dead_in = dead_units(mask, groups)
        pos = positions.get(name, 0)
        total = mask.numel()
        layers[name] = {
            "type": type(module).__name__, "shape": list(mask.shape),
            "prunable": total, "remaining": kept, "sparsity": 1.0 - kept / total,
            "effective": used, "effective_sparsity": 1.0 - used / total,
            "output_positions": pos, "macs_dense": total * pos, "macs_sparse": kept * pos,
            "units_out": mask.shape[0], "dead_out": dead_out,
            "units_in": mask.shape[1] * groups, "dead_in": dead_in,
            "collapsed": kept == 0, "reached": name in positions,
        }
    prunable = sum(v["prunable"] for v in layers.values())
    remaining = sum(v["remaining"] for v in layers.values())
    return {
        "layers": layers,
        "prunable": prunable, "remaining": remaining, "sparsity": 1.0 - remaining / prunable,
        "effective": sum(effective), "effective_sparsity": 1.0 - sum(effective) / prunable,
        "macs_dense": sum(v["macs_dense"] for v in layers.values()),
        "macs_sparse": sum(v["macs_sparse"] for v in layers.values()),
        "collapsed_layers": [n for n, v in layers.items() if v["collapsed"]],
    }
