"""What happens after a run's last epoch: per-layer accounting, multiply-adds (inference, and training:
compute.py), size, collapsed layers, the layer figure, TensorBoard scalars and (``quantize=true``) int8
quantization; :func:`at_run_end` returns the entries run.py adds to summary.json. A failure here is
logged and recorded, never lost training.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig

from flipout_repro.analysis.compute import run_training_macs
from flipout_repro.analysis.layers import layer_report
from flipout_repro.analysis.plots import FIGURE_FILE, plot_layer_sparsity, run_title
from flipout_repro.analysis.quantize import log_quantization, merge_quantization, quantize_and_evaluate, \
    settings_from_config
from flipout_repro.analysis.size import model_size
from flipout_repro.rundir import real_folder
from flipout_repro.sparsity.masking import Masks
from flipout_repro.rundir import RunDir
from flipout_repro.training.metrics_log import RUN_END

log = logging.getLogger("flipout_repro")


def analyse(model: torch.nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Summary entries: ``layers``, ``effective_sparsity`` (analysis/layers.py), ``macs_dense``, ``macs_sparse``,
    ``collapsed_layers``, ``model_size``."""
    report = layer_report(model, masks, input_shape)
    for name in report["collapsed_layers"]:  # warned at the prune event that did it (training/collapse.py)
        log.info("layer %s collapsed: all %d of its weights were pruned, no signal crosses it", name,
                 report["layers"][name]["prunable"])
    return {"layers": report["layers"], "effective_sparsity": report["effective_sparsity"], "macs_dense": report["macs_dense"], "macs_sparse": report["macs_sparse"],
            "collapsed_layers": report["collapsed_layers"], "model_size": model_size(model, masks)}


def run_end_scalars(entries: dict[str, Any], step: int) -> list[tuple[str, float, int]]:
    """The run end's numbers as ``(tag, value, x)`` at ``step`` (the last epoch), under ``run_end/``:
    collapsed layers, effective sparsity, the share of multiply-adds left, each layer's final sparsity, the
    int8 results."""
    out = [(f"{RUN_END}/layers/collapsed", len(entries["collapsed_layers"]))]
    if "effective_sparsity" in entries:
        out.append((f"{RUN_END}/layers/effective_sparsity", entries["effective_sparsity"]))
    out.append((f"{RUN_END}/layers/macs_sparse_fraction", entries["macs_sparse"] / max(entries["macs_dense"], 1)))
    out += [(f"{RUN_END}/layers/final_sparsity/{name}", layer["sparsity"]) for name, layer in entries["layers"].items()]
    q = entries.get("quantization")
    if q and "test_acc" in q:
        out += [(f"{RUN_END}/quantization/test_acc", q["test_acc"]),
                (f"{RUN_END}/quantization/fp32_test_acc", q["fp32_test_acc"]),
                (f"{RUN_END}/quantization/zeros_preserved", float(q["zeros_preserved"]))]
    return [(tag, value, step) for tag, value in out]


def write_tensorboard(run: RunDir, entries: dict[str, Any], step: int) -> None:
    """:func:`run_end_scalars` as TensorBoard scalars, and the collapsed layers' names as text, at ``step``."""
    from torch.utils.tensorboard import SummaryWriter  # at the run's end only

    with SummaryWriter(log_dir=str(real_folder(run.tb, run.path))) as tb:  # tb/: never a link
        for tag, value, x in run_end_scalars(entries, step):
            tb.add_scalar(tag, value, x)
        tb.add_text(f"{RUN_END}/layers/collapsed_layers", ", ".join(entries["collapsed_layers"]) or "none", step)


def at_run_end(cfg: DictConfig, model: torch.nn.Module, masks: Masks, data: Any, run: RunDir,
               quantize: bool | None = None, start_step: int = 0) -> dict[str, Any]:
    """Everything this module adds to a finished run's summary; also the figure and TensorBoard.
    ``start_step``: where training started (a derived run may start inside the schedule; its compute is
    counted from there).

    A failure here is logged and recorded, never lost training: the run's summary is still written.
    ``quantize`` overrides ``cfg.quantize`` (False: leave int8 for later, e.g. when the job is being
    pre-empted; ``quantize=true`` on the finished run does it then).
    """
    input_shape = (data.in_channels, data.image_size, data.image_size)
    entries = analyse(model, masks, input_shape)
    try:
        entries |= run_training_macs(entries["layers"], run.metrics, int(cfg.epochs) * data.steps_per_epoch(
            int(cfg.batch_size)), len(data.train_y), int(cfg.batch_size), start_step=start_step)
    except Exception as exc:  # an accounting gap must never cost a finished run
        log.warning("training multiply-adds not counted: %s: %s", type(exc).__name__, exc)
    try:
        plot_layer_sparsity(entries["layers"], run.path / FIGURE_FILE, title=run_title(cfg))
        entries["layer_figure"] = FIGURE_FILE
    except Exception as exc:  # a figure must never cost a finished run
        log.warning("layer sparsity figure not written: %s", exc)
    if cfg.quantize if quantize is None else quantize:
        try:
            result = quantize_and_evaluate(model, masks, data, settings_from_config(cfg), cfg.eval_batch_size,
                                           save_dir=run.path)
            entries["quantization"] = merge_quantization(None, result)
            log_quantization(result)
        except Exception as exc:  # e.g. a model FX cannot trace: keep the run, record why
            log.error("int8 quantization failed: %s: %s", type(exc).__name__, exc)
            entries["quantization"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_tensorboard(run, entries, int(cfg.epochs))
    return entries
