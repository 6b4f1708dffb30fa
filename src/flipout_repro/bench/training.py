"""flipout-bench: steady-state training throughput of every method, measured by the real training step.

Synthetic data of the real shape (no download); each method runs the same ``Trainer.step`` as a run
does, with its masks already at ``--sparsity`` so that masking is active; ``dense`` is the baseline
and every method's overhead is reported as a ratio to it, measured in the same process. Methods are
timed in interleaved rounds (dense, a, b, ..., dense, a, b, ...) so that drift on a busy machine
affects all of them alike; the median step time over rounds is reported.

A ratio of two medians is only as good as the rounds behind it: when a method's slowest round is more
than ``spread_limit`` (default 1.5) times its fastest, something else took the CPU/GPU during the
measurement and the ratio is flagged as not to be trusted (see :func:`spread_warnings`). Why max/min and
1.5: with the default 3 rounds an IQR is not defined in any useful way, and on an idle machine the rounds
of one method agree within ~10-20 %; a 1.5x gap means a round ran at two thirds of the speed of another,
which is more than the method overheads being measured (1.0x-1.3x). The threshold is printed with the
table and recorded in the JSON. The torch CPU thread count (``torch.get_num_threads()``) is printed and
recorded too: CPU timings depend on it, and several processes sharing cores distort them.
"""
from __future__ import annotations

import platform
import resource
import statistics
import time
from typing import Any

import torch

from flipout_repro.config.validate import compose_config
from flipout_repro.data import TensorData
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.sparsity.schedule import PruneEvent
from flipout_repro.training.build import build_method, build_model, build_optimizer, set_determinism
from flipout_repro.training.build import resolve_device as run_resolve_device
from flipout_repro.training.trainer import Trainer

DEFAULT_METHODS = ["dense", "flipout_no_noise", "flipout", "global_magnitude", "noisy_global_magnitude"]
#: a method's slowest round over its fastest above which its ratio to dense is flagged (module doc)
SPREAD_LIMIT = 1.5


def _group(group: str, name: str):
    return compose_config(f"{group}={name}")[group]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(model_name: str, method_name: str, shape: tuple[int, int, int], classes: int, batch: int,
                 device: torch.device, sparsity: float, precision: str, channels_last: bool,
                 compile_model: bool, experiment: str | None = None) -> Trainer:
    """A Trainer on synthetic data whose masks are already at ``sparsity`` (unless dense). With
    ``experiment``, the preset's network, optimiser (its groups, rate and schedule) and loss, as a run of
    it builds them (``model_name`` is then the preset's); otherwise SGD (lr 1e-3, momentum 0.9, weight
    decay 5e-4) and the mean cross-entropy."""
    torch.manual_seed(0)
    set_determinism(False, device)  # as a run with the default deterministic=false: cuDNN autotuning on CUDA
    c, h, w = shape
    n = batch * 4
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, device=device, generator=g)
    y = torch.randint(0, classes, (n,), device=device, generator=g)
    stat = torch.full((1, c, 1, 1), 0.5, device=device)
    data = TensorData(x, y, x[:batch], y[:batch], stat, stat, crop_padding=4 if h >= 32 else 0, flip=h >= 32)
    cfg = compose_config(f"experiment={experiment}", f"method={method_name}") if experiment else None
    model = build_model(cfg.model if cfg else _group("model", model_name), c, classes, h, device, channels_last)
    masks = Masks.for_model(model)
    method = build_method(cfg.method if cfg else _group("method", method_name), model, masks)
    if compile_model:
        method.compile_hooks()
    loss = {}
    if cfg is not None:
        opt, sched = build_optimizer(cfg, model, steps_per_epoch=4)
        loss = {"label_smoothing": float(cfg.loss.label_smoothing), "loss_reduction": str(cfg.loss.reduction)}
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [10**9])
    if method.prunes and sparsity > 0:
        prune_to([torch.rand_like(m) for m in masks.values], masks, sparsity)
        method.after_prune()
    return Trainer(model, data, method, masks, opt, sched, [PruneEvent(10**12, sparsity)], epochs=1,
                   target=sparsity, batch_size=batch, eval_batch_size=batch, generator=g, progress=False,
                   compiled=torch.compile(model) if compile_model else None,
                   autocast_dtype=torch.bfloat16 if precision == "bf16" else None, channels_last=channels_last,
                   **loss)


def bench(model: str, methods: list[str], shape: tuple[int, int, int], classes: int, batch: int, steps: int,
          warmup: int, rounds: int, device: torch.device, sparsity: float = 0.9, precision: str = "fp32",
          channels_last: bool = False, compile_model: bool = False,
          spread_limit: float = SPREAD_LIMIT, experiment: str | None = None) -> dict[str, Any]:
    """Median step time, images/s and peak memory of each method, its ratio to dense, the spread of its
    rounds (max/min) and the warnings of :func:`spread_warnings`. ``experiment``: the preset's own training
    step (:func:`make_trainer`)."""
    trainers = {m: make_trainer(model, m, shape, classes, batch, device, sparsity, precision, channels_last,
                                compile_model, experiment) for m in methods}
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
    rows = summarize_rounds(times, batch, peak)
    return {
        "model": model, "input_shape": list(shape), "classes": classes, "batch_size": batch,
        "experiment": experiment, "device": str(device), "device_name": _device_name(device), "precision": precision,
        "channels_last": channels_last, "compile": compile_model, "sparsity": sparsity,
        "steps_per_round": steps, "rounds": rounds, "warmup": warmup, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "process_max_rss_mib": _max_rss_mib(), "methods": rows,
        "baseline": methods[0], "spread_limit": spread_limit, "warnings": spread_warnings(rows, spread_limit),
    }


def summarize_rounds(times: dict[str, list[float]], batch: int, peak: dict[str, float] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Per method (the first is the baseline): median step time (s per step in ``times``), images/s,
    ratio to the baseline's median, the rounds in ms, their spread (slowest / fastest) and peak memory."""
    base = statistics.median(next(iter(times.values())))
    rows = {}
    for m, rounds in times.items():
        step = statistics.median(rounds)
        rows[m] = {"step_ms": 1e3 * step, "images_per_s": batch / step, "ratio_to_dense": step / base,
                   "step_ms_rounds": [1e3 * s for s in rounds], "spread": max(rounds) / min(rounds),
                   "peak_mem_mib": (peak or {}).get(m)}
    return rows


def spread_warnings(rows: dict[str, dict[str, Any]], limit: float = SPREAD_LIMIT) -> list[str]:
    """One line per method whose rounds spread more than ``limit`` (slowest / fastest round): its ratio
    to dense (and, for the baseline, every ratio) is not to be trusted."""
    base = next(iter(rows))
    out = []
    for m, r in rows.items():
        if r["spread"] > limit:
            rounds = ", ".join(f"{v:.3g}" for v in r["step_ms_rounds"])
            whose = "every ratio (it is the baseline)" if m == base else f"its x {base} ratio"
            out.append(f"{m}: rounds {rounds} ms spread {r['spread']:.2f}x > {limit:g}x (slowest/fastest): {whose} "
                       "is not to be trusted; rerun on an idle machine, with more --rounds/--steps")
    return out


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of one benchmark result."""
    lines = [f"{result['model']} {tuple(result['input_shape'])} batch {result['batch_size']} on "
             f"{result['device_name']} ({result['device']}, {result['precision']}, compile={result['compile']}), "
             f"torch threads {result['threads']}, {result['rounds']} rounds of {result['steps_per_round']} steps",
             "", "| method | step ms | images/s | x dense | rounds max/min | peak MiB |",
             "|---|---:|---:|---:|---:|---:|"]
    limit = result.get("spread_limit", SPREAD_LIMIT)
    for m, r in result["methods"].items():
        mem = "-" if r["peak_mem_mib"] is None else f"{r['peak_mem_mib']:.0f}"
        spread = r.get("spread", 1.0)
        flag = " (!)" if spread > limit else ""
        lines.append(f"| {m} | {r['step_ms']:.2f} | {r['images_per_s']:.0f} | {r['ratio_to_dense']:.3f} | "
                     f"{spread:.2f}{flag} | {mem} |")
    lines += ["", f"spread limit {limit:g}x (slowest/fastest round): " + (
        "all methods within it" if not result.get("warnings") else "exceeded, see the warnings")]
    lines += [f"WARNING: {w}" for w in result.get("warnings", [])]
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
