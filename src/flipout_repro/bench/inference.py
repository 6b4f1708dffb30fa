"""Measured inference latency of a pruned network against the dense one, on this machine's CPU.

The *dense* network is the run's model as trained (pruned weights are zeros, still multiplied). The
*sparse* one is the same model with every pruned Linear layer stored as what it is: its weight as a
torch.sparse CSR matrix (x @ W^T computed as (W_csr @ x^T)^T); Conv2d layers stay dense (PyTorch has no
sparse convolution on the CPU). Each case (dense and sparse, the whole network and each replaced layer, at
each batch size) is timed in ``rounds`` interleaved rounds (dense, sparse, dense, sparse, ...: drift on a
busy machine hits both alike) of ``repeats`` forward passes after ``warmup`` untimed ones, under
torch.inference_mode, with the thread count torch uses (recorded). A round's time is the median of its
passes; a case's latency is the median of its rounds. The speed-up is dense / sparse, reported as
measured, below 1x included: CSR pays an index lookup per kept weight, so it wins only at high sparsity.

A measurement says when it is noise, as the training bench does (bench/training.py): a case whose slowest
round is more than ``spread_limit`` (default 1.5) times its fastest was disturbed by something else on
the machine, and every speed-up it enters is flagged (``warnings``, ``trusted: false``); flipout-bench
then writes the measurement, marked, to inference.json but no speed-up into the run's summary.json.

Where a Linear layer's mask is 2:4 (``pattern=nm``) and a CUDA GPU is present, each such layer is
also timed on the GPU in float16 three ways (:func:`semi_structured_bench`): dense, its weight as
``torch.sparse.to_sparse_semi_structured`` (the sparse tensor cores' 2:4 storage; zero-padded to the
kernels' multiples, patterns.semi_structured_padding) and as CSR. On a CPU that part is skipped, with the
reason in the result.
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

from flipout_repro.bench.training import SPREAD_LIMIT
from flipout_repro.sparsity.masking import Masks
from flipout_repro.sparsity.patterns import is_nm, semi_structured_padding, semi_structured_problem


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


def _round_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """One timed round: the median wall time (ms) of ``repeats`` forward passes of ``x``."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def timed_pair(dense: nn.Module, sparse: nn.Module, x: torch.Tensor, warmup: int, repeats: int,
               rounds: int) -> dict[str, Any]:
    """Dense and sparse latency of ``x`` in interleaved rounds: each one's median over its rounds (ms), the
    rounds, the spread (slowest / fastest round, the larger of the two) and the speed-up dense / sparse."""
    with torch.inference_mode():
        for _ in range(warmup):
            dense(x)
            sparse(x)
    d, s = [], []
    for _ in range(rounds):
        d.append(_round_ms(dense, x, repeats))
        s.append(_round_ms(sparse, x, repeats))
    dm, sm = statistics.median(d), statistics.median(s)
    return {"dense_ms": dm, "sparse_ms": sm, "speedup": dm / sm, "dense_ms_rounds": d, "sparse_ms_rounds": s,
            "spread": max(max(d) / min(d), max(s) / min(s))}


def bench_inference(model: nn.Module, masks: Masks, input_shape: tuple[int, ...], batches: tuple[int, ...] = (1, 64),
                    warmup: int = 5, repeats: int = 10, seed: int = 0, rounds: int = 3,
                    spread_limit: float = SPREAD_LIMIT) -> dict[str, Any]:
    """Dense and sparse (CSR Linear) latency of ``model`` at each batch size, the whole network and each
    replaced Linear layer alone, with the spread of their rounds and the warnings of
    :func:`inference_warnings`; returns a JSON-ready dict."""
    dense = copy.deepcopy(model).cpu().eval()
    sparse, replaced = sparse_model(model, masks)
    gen = torch.Generator().manual_seed(seed)
    kept = dict(zip(masks.names, masks.nonzero_counts()))
    layers = {n: {"shape": list(dense.get_submodule(n).weight.shape),
                  "sparsity": 1.0 - kept[f"{n}.weight"] / dense.get_submodule(n).weight.numel()} for n in replaced}
    out: dict[str, Any] = {"device": "cpu", "cpu": platform.processor() or platform.machine(),
                           "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "warmup": warmup, "repeats": repeats, "rounds": rounds, "spread_limit": spread_limit,
                           "sparsity": masks.sparsity(), "csr_layers": layers, "batches": {}}
    for b in batches:
        x = torch.randn(b, *input_shape, generator=gen)
        with torch.inference_mode():
            gap = (dense(x) - sparse(x)).abs().max().item()
        whole = timed_pair(dense, sparse, x, warmup, repeats, rounds)
        per_layer = {}
        for n in replaced:
            xi = torch.randn(b, dense.get_submodule(n).in_features, generator=gen)
            per_layer[n] = timed_pair(dense.get_submodule(n), sparse.get_submodule(n), xi, warmup, repeats, rounds)
        out["batches"][str(b)] = {**whole, "max_abs_output_diff": gap, "linear_layers": per_layer}
    out["warnings"] = inference_warnings(out)
    out["trusted"] = not out["warnings"]
    out["semi_structured"] = semi_structured_bench(model, masks, batches, warmup, repeats)
    return out


def inference_warnings(result: dict[str, Any]) -> list[str]:
    """One line per case (a batch size, the whole network or one layer) whose rounds spread more than the
    result's ``spread_limit`` (slowest / fastest round): its speed-up is not to be trusted."""
    limit, out = result["spread_limit"], []
    for b, v in result["batches"].items():
        for what, case in [("network", v), *((f"layer {n}", c) for n, c in v["linear_layers"].items())]:
            if case["spread"] > limit:
                rounds = "; ".join(f"{k} {', '.join(f'{t:.3g}' for t in case[f'{k}_ms_rounds'])} ms"
                                   for k in ("dense", "sparse"))
                out.append(f"batch {b}, {what}: rounds {rounds}: spread {case['spread']:.2f}x > {limit:g}x"
                           f" (slowest/fastest): its {case['speedup']:.2f}x speed-up is not to be trusted")
    return out


def semi_structured_bench(model: nn.Module, masks: Masks, batches: tuple[int, ...] = (1, 64), warmup: int = 5,
                          repeats: int = 30, device: str | None = None) -> dict[str, Any]:
    """GPU float16 latency of every Linear layer with a 2:4 mask: dense, 2:4 semi-structured and CSR, at each
    batch size; ``{"skipped": why, ...}`` where there is no such layer, no CUDA device (``device``, default
    cuda when present) or a GPU below compute capability 8.0 (no sparse tensor cores)."""
    mask_of = dict(zip(masks.names, masks.values))
    layers = {n: mod for n, mod in model.named_modules() if isinstance(mod, nn.Linear)
              and f"{n}.weight" in mask_of and is_nm(mask_of[f"{n}.weight"], 2, 4)}
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out: dict[str, Any] = {"layers_2_4": sorted(layers), "dtype": "float16"}
    if not layers:
        return {**out, "skipped": "no Linear layer has a 2:4 mask (pattern=nm pattern.n=2 pattern.m=4)"}
    if dev.type != "cuda":
        return {**out, "skipped": f"device {dev.type}: torch.sparse.to_sparse_semi_structured needs a CUDA GPU"
                                  " (compute capability 8.0+); the 2:4 layout is checked in summary.json instead"}
    if torch.cuda.get_device_capability(dev) < (8, 0):
        return {**out, "skipped": f"GPU {torch.cuda.get_device_name(dev)} has no 2:4 sparse tensor cores (< sm80)"}
    out.update(device=torch.cuda.get_device_name(dev), batches={})
    for b in batches:
        per_layer = {}
        for n, lin in layers.items():
            per_layer[n] = _time_2_4(lin.weight.detach() * mask_of[f"{n}.weight"], b, warmup, repeats, dev)
        out["batches"][str(b)] = per_layer
    return out


def _time_2_4(weight: torch.Tensor, batch: int, warmup: int, repeats: int, dev: torch.device) -> dict[str, Any]:
    """One 2:4 Linear weight on ``dev`` in float16: dense, semi-structured and CSR ms (or the error)."""
    rows, cols = semi_structured_padding(weight.shape)
    w = torch.zeros(rows, cols, dtype=torch.float16, device=dev)
    w[:weight.shape[0], :weight.shape[1]] = weight.to(dev, torch.float16)
    problem = semi_structured_problem(w)
    x = torch.randn(batch, cols, dtype=torch.float16, device=dev)
    rec: dict[str, Any] = {"shape": list(weight.shape), "padded_shape": [rows, cols], "layout_problem": problem}
    rec["dense_ms"] = _cuda_ms(lambda: torch.nn.functional.linear(x, w), warmup, repeats)
    try:
        ws = torch.sparse.to_sparse_semi_structured(w)
        rec["semi_structured_ms"] = _cuda_ms(lambda: torch.nn.functional.linear(x, ws), warmup, repeats)
        rec["max_abs_diff"] = float((torch.nn.functional.linear(x, ws) - x @ w.t()).abs().max())
    except (RuntimeError, NotImplementedError) as exc:  # recorded, not raised: the other numbers stand
        rec["semi_structured_error"] = f"{type(exc).__name__}: {exc}"[:300]
    try:
        csr = w.to_sparse_csr()
        rec["csr_ms"] = _cuda_ms(lambda: torch.sparse.mm(csr, x.t()).t(), warmup, repeats)
    except (RuntimeError, NotImplementedError) as exc:
        rec["csr_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return rec


def _cuda_ms(fn: Any, warmup: int, repeats: int) -> float:
    """Median milliseconds of ``fn()`` on the current CUDA stream (synchronised around each call)."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def format_inference(r: dict[str, Any]) -> str:
    """A short text table of a bench_inference result."""
    limit = r.get("spread_limit", SPREAD_LIMIT)
    lines = [f"CPU inference, {r['threads']} thread(s), torch {r['torch']}, sparsity {100 * r['sparsity']:.2f} %;"
             f" Linear layers as sparse CSR: {', '.join(r['csr_layers']) or 'none'}",
             f"{r.get('rounds', 1)} rounds of {r['repeats']} forward passes per case",
             f"{'batch':>6} {'dense ms':>10} {'sparse ms':>10} {'speed-up':>9} {'rounds max/min':>15}"]
    for b, v in r["batches"].items():
        spread = v.get("spread", 1.0)
        lines.append(f"{b:>6} {v['dense_ms']:>10.3f} {v['sparse_ms']:>10.3f} {v['speedup']:>8.2f}x"
                     f" {spread:>11.2f}{' (!)' if spread > limit else '    '}")
    lines += ["", f"spread limit {limit:g}x (slowest/fastest round): " + (
        "every case within it" if not r.get("warnings") else "exceeded, see the warnings")]
    lines += [f"WARNING: {w}" for w in r.get("warnings", [])]
    return "\n".join(lines)
