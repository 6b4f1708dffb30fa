"""Measured inference latency of a pruned network against the dense one, on this machine's CPU.

The *dense* network is the run's model as trained (pruned weights are zeros, still multiplied). The
*sparse* one is the same model with every pruned Linear layer stored as what it is: its weight as a
torch.sparse CSR matrix (x @ W^T computed as (W_csr @ x^T)^T); Conv2d layers stay dense (PyTorch has no
sparse convolution on the CPU). Latency is the median over ``repeats`` timed forward passes after
``warmup`` untimed ones, under torch.inference_mode, with the thread count torch uses (recorded). The
speed-up is dense / sparse, reported as measured, below 1x included: CSR pays an index lookup per kept
weight, so it wins only at high sparsity.
"""
from __future__ import annotations

import copy
import platform
import statistics
import time
import warnings
from typing import Any

import torch
from torch import nn

from flipout_repro.masking import Masks


class CSRLinear(nn.Module):
    """A Linear layer whose weight is stored as a sparse CSR matrix (its zeros are not stored)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            self.weight = linear.weight.detach().to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().clone()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out), as nn.Linear."""
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def sparse_model(model: nn.Module, masks: Masks) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` with each masked Linear layer as a CSRLinear; the names of those layers."""
    copied = copy.deepcopy(model).cpu().eval()
    masked = {n.rsplit(".", 1)[0] for n in masks.names if n.endswith("weight")}
    replaced = []
    for name, module in list(copied.named_modules()):
        if isinstance(module, nn.Linear) and name in masked:
            parent = copied.get_submodule(name.rsplit(".", 1)[0]) if "." in name else copied
            setattr(parent, name.rsplit(".", 1)[-1], CSRLinear(module))
            replaced.append(name)
    return copied, replaced


def latency_ms(model: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> float:
    """Median wall time of one forward pass of ``x`` in milliseconds."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def bench_inference(model: nn.Module, masks: Masks, input_shape: tuple[int, ...], batches: tuple[int, ...] = (1, 64),
                    warmup: int = 5, repeats: int = 30, seed: int = 0) -> dict[str, Any]:
    """Dense and sparse (CSR Linear) latency of ``model`` at each batch size, the whole network and each
    replaced Linear layer alone; returns a JSON-ready dict."""
    dense = copy.deepcopy(model).cpu().eval()
    sparse, replaced = sparse_model(model, masks)
    gen = torch.Generator().manual_seed(seed)
    kept = dict(zip(masks.names, masks.nonzero_counts()))
    layers = {n: {"shape": list(dense.get_submodule(n).weight.shape),
                  "sparsity": 1.0 - kept[f"{n}.weight"] / dense.get_submodule(n).weight.numel()} for n in replaced}
    out: dict[str, Any] = {"device": "cpu", "cpu": platform.processor() or platform.machine(),
                           "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "warmup": warmup, "repeats": repeats, "sparsity": masks.sparsity(),
                           "csr_layers": layers, "batches": {}}
    for b in batches:
        x = torch.randn(b, *input_shape, generator=gen)
        with torch.inference_mode():
            gap = (dense(x) - sparse(x)).abs().max().item()
        d, s = latency_ms(dense, x, warmup, repeats), latency_ms(sparse, x, warmup, repeats)
        per_layer = {}
        for n in replaced:
            lin = dense.get_submodule(n)
            xi = torch.randn(b, lin.in_features, generator=gen)
            ld = latency_ms(lin, xi, warmup, repeats)
            ls = latency_ms(sparse.get_submodule(n), xi, warmup, repeats)
            per_layer[n] = {"dense_ms": ld, "sparse_ms": ls, "speedup": ld / ls}
        out["batches"][str(b)] = {"dense_ms": d, "sparse_ms": s, "speedup": d / s, "max_abs_output_diff": gap,
                                  "linear_layers": per_layer}
    return out


def format_inference(r: dict[str, Any]) -> str:
    """A short text table of a bench_inference result."""
    lines = [f"CPU inference, {r['threads']} thread(s), torch {r['torch']}, sparsity {100 * r['sparsity']:.2f} %;"
             f" Linear layers as sparse CSR: {', '.join(r['csr_layers']) or 'none'}",
             f"{'batch':>6} {'dense ms':>10} {'sparse ms':>10} {'speed-up':>9}"]
    for b, v in r["batches"].items():
        lines.append(f"{b:>6} {v['dense_ms']:>10.3f} {v['sparse_ms']:>10.3f} {v['speedup']:>8.2f}x")
    return "\n".join(lines)
