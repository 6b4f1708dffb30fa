"""flipout-bench: steady-state training throughput of every method, measured by the real training step.

Synthetic data of the real shape (no download); each method runs the same ``Trainer.step`` as a run
does, with its masks already at ``--sparsity`` so that masking is active; ``dense`` is the baseline
and every method's overhead is reported as a ratio to it, measured in the same process. Methods are
timed in interleaved rounds (dense, a, b, ..., dense, a, b, ...) so that drift on a busy machine
affects all of them alike; the median step time over rounds is reported.
"""
from __future__ import annotations

import platform
import resource
import statistics
import time
from typing import Any

import torch

from flipout_repro.config import compose_config
from flipout_repro.data import TensorData
from flipout_repro.masking import Masks, prune_to
from flipout_repro.schedule import PruneEvent
from flipout_repro.training.build import build_method, build_model, set_determinism
from flipout_repro.training.build import resolve_device as run_resolve_device
from flipout_repro.training.trainer import Trainer

DEFAULT_METHODS = ["dense", "flipout_no_noise", "flipout", "global_magnitude", "noisy_global_magnitude"]


def _group(group: str, name: str):
    return compose_config(f"{group}={name}")[group]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(model_name: str, method_name: str, shape: tuple[int, int, int], classes: int, batch: int,
                 device: torch.device, sparsity: float, precision: str, channels_last: bool,
                 compile_model: bool) -> Trainer:
    """A Trainer on synthetic data whose masks are already at ``sparsity`` (unless dense)."""
    torch.manual_seed(0)
    set_determinism(False, device)  # as a run with the default deterministic=false: cuDNN autotuning on CUDA
    c, h, w = shape
    n = batch * 4
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, device=device, generator=g)
    y = torch.randint(0, classes, (n,), device=device, generator=g)
    stat = torch.full((1, c, 1, 1), 0.5, device=device)
    data = TensorData(x, y, x[:batch], y[:batch], stat, stat, crop_padding=4 if h >= 32 else 0, flip=h >= 32)
    model = build_model(_group("model", model_name), c, classes, h, device, channels_last)
    masks = Masks.for_model(model)
    method = build_method(_group("method", method_name), model, masks)
    if compile_model:
        method.compile_hooks()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [10**9])
    if method.prunes and sparsity > 0:
        prune_to([torch.rand_like(m) for m in masks.values], masks, sparsity)
        method.after_prune()
    return Trainer(model, data, method, masks, opt, sched, [PruneEvent(10**12, sparsity)], epochs=1,
                   target=sparsity, batch_size=batch, eval_batch_size=batch, generator=g, progress=False,
                   compiled=torch.compile(model) if compile_model else None,
                   autocast_dtype=torch.bfloat16 if precision == "bf16" else None, channels_last=channels_last)


def bench(model: str, methods: list[str], shape: tuple[int, int, int], classes: int, batch: int, steps: int,
          warmup: int, rounds: int, device: torch.device, sparsity: float = 0.9, precision: str = "fp32",
          channels_last: bool = False, compile_model: bool = False) -> dict[str, Any]:
    """Median step time, images/s and peak memory of each method, and its ratio to dense."""
    trainers = {m: make_trainer(model, m, shape, classes, batch, device, sparsity, precision, channels_last,
                                compile_model) for m in methods}
    batches = {m: next(t.data.train_batches(batch, t.generator)) for m, t in trainers.items()}
    times: dict[str, list[float]] = {m: [] for m in methods}
    peak: dict[str, float] = {}
    for m, t in trainers.items():  # warm-up (and compilation) outside the timed rounds
        for _ in range(warmup):
            t.step(*batches[m])
    _sync(device)
    for _ in range(rounds):
        for m, t in trainers.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                t.step(*batches[m])
            _sync(device)
            times[m].append((time.perf_counter() - t0) / steps)
            if device.type == "cuda":
                peak[m] = max(peak.get(m, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)
    base = statistics.median(times[methods[0]])
    rows = {}
    for m in methods:
        step = statistics.median(times[m])
        rows[m] = {"step_ms": 1e3 * step, "images_per_s": batch / step, "ratio_to_dense": step / base,
                   "step_ms_rounds": [1e3 * s for s in times[m]], "peak_mem_mib": peak.get(m)}
    return {
        "model": model, "input_shape": list(shape), "classes": classes, "batch_size": batch,
        "device": str(device), "device_name": _device_name(device), "precision": precision,
        "channels_last": channels_last, "compile": compile_model, "sparsity": sparsity,
        "steps_per_round": steps, "rounds": rounds, "warmup": warmup, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "process_max_rss_mib": _max_rss_mib(), "methods": rows,
        "baseline": methods[0],
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of one benchmark result."""
    lines = [f"{result['model']} {tuple(result['input_shape'])} batch {result['batch_size']} on "
             f"{result['device_name']} ({result['device']}, {result['precision']}, compile={result['compile']})",
             "", "| method | step ms | images/s | x dense | peak MiB |", "|---|---:|---:|---:|---:|"]
    for m, r in result["methods"].items():
        mem = "-" if r["peak_mem_mib"] is None else f"{r['peak_mem_mib']:.0f}"
        lines.append(f"| {m} | {r['step_ms']:.2f} | {r['images_per_s']:.0f} | {r['ratio_to_dense']:.3f} | {mem} |")
    if all(r["peak_mem_mib"] is None for r in result["methods"].values()):
        lines += ["", f"peak memory per method is measured on CUDA devices only; this process peaked at "
                      f"{result['process_max_rss_mib']:.0f} MiB resident (all methods together)"]
    return "\n".join(lines)


def resolve_device(name: str) -> torch.device:
    """As a run resolves ``device``; an unavailable CUDA device is a one-line error."""
    if name != "auto" and torch.device(name).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device={name}: torch sees no CUDA device here (torch {torch.__version__}): use "
                         "--device cpu or run it on a GPU machine")
    return run_resolve_device(name)
