"""What the pruned network is worth, at the end of a run: layers, multiply-adds, size, collapse, int8.

``run.py`` calls :func:`check_config` before training and :func:`at_run_end` just before it writes
summary.json; the ``flipout-quantize`` command calls :func:`quantize_run_folder` on a finished run.
Config keys: ``quantize`` (bool, default false) and ``quantization.{observer, calibration_batches,
backend}``; neither changes what training computes, so neither is part of the run hash.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from flipout_repro.analysis import layer_report
from flipout_repro.config import ConfigError
from flipout_repro.layer_figure import FIGURE_FILE, plot_layer_sparsity
from flipout_repro.masking import Masks
from flipout_repro.model_size import model_size
from flipout_repro.quantize import BACKENDS, OBSERVERS, QuantSettings, quantize_and_evaluate
from flipout_repro.results import RunDir

log = logging.getLogger("flipout_repro")

QUANT_DEFAULTS = {"observer": "histogram", "calibration_batches": "all", "backend": "x86"}


def check_config(cfg: DictConfig) -> None:
    """ConfigError (key, value, fix) for a bad ``quantize`` or ``quantization.*`` value."""
    value = cfg.get("quantize", False)
    if not isinstance(value, bool):
        raise ConfigError("quantize", value, "must be true or false", "e.g. quantize=true")
    q = cfg.get("quantization") or {}
    for key in q:
        if key not in QUANT_DEFAULTS:
            raise ConfigError(f"quantization.{key}", q[key], "is not a quantization setting",
                              f"use one of {', '.join(QUANT_DEFAULTS)}")
    observer = q.get("observer", QUANT_DEFAULTS["observer"])
    if observer not in OBSERVERS:
        raise ConfigError("quantization.observer", observer, "is not an observer", f"use one of {', '.join(OBSERVERS)}")
    backend = q.get("backend", QUANT_DEFAULTS["backend"])
    if backend not in BACKENDS:
        raise ConfigError("quantization.backend", backend, "is not a backend", f"use one of {', '.join(BACKENDS)}")
    if value and backend not in torch.backends.quantized.supported_engines:
        raise ConfigError("quantization.backend", backend, "is not supported by this torch build",
                          f"use one of {', '.join(e for e in BACKENDS if e in torch.backends.quantized.supported_engines)}")
    n = q.get("calibration_batches", QUANT_DEFAULTS["calibration_batches"])
    if n != "all" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError("quantization.calibration_batches", n, "must be a positive integer or all",
                          "e.g. quantization.calibration_batches=32, or all for one pass over the training set")


def settings_from_config(cfg: DictConfig) -> QuantSettings:
    """QuantSettings from a run config (calibration batches of the run's batch size, the run's seed)."""
    q = {**QUANT_DEFAULTS, **dict(cfg.get("quantization") or {})}
    batches = q["calibration_batches"]
    return QuantSettings(observer=q["observer"], calibration_batches=batches if batches == "all" else int(batches),
                         batch_size=int(cfg.batch_size), backend=q["backend"], seed=int(cfg.seed))


def analyse(model: torch.nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Summary entries: ``layers``, ``macs_dense``, ``macs_sparse``, ``collapsed_layers``, ``model_size``."""
    report = layer_report(model, masks, input_shape)
    for name in report["collapsed_layers"]:
        log.warning("layer %s collapsed: all %d of its weights were pruned, no signal crosses it", name,
                    report["layers"][name]["prunable"])
    return {"layers": report["layers"], "macs_dense": report["macs_dense"], "macs_sparse": report["macs_sparse"],
            "collapsed_layers": report["collapsed_layers"], "model_size": model_size(model, masks)}


def merge_quantization(previous: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """The newest result at the top (``test_acc`` etc.), every observer's result kept in ``by_observer``."""
    by_observer = dict((previous or {}).get("by_observer", {}))
    by_observer[result["observer"]] = {k: v for k, v in result.items() if k != "by_observer"}
    return {**result, "by_observer": by_observer}


def log_quantization(result: dict[str, Any]) -> None:
    """One line: int8 vs fp32 accuracy and the zero check."""
    log.info("int8 (%s, %s): test %.2f%% vs fp32 %.2f%% on CPU; pruned zeros preserved: %s (%d pruned, %d "
             "nonzero after)", result["observer"], result["backend"], result["test_acc"], result["fp32_test_acc"],
             result["zeros_preserved"], result["pruned_weights"], result["pruned_nonzero"])
    if not result["zeros_preserved"]:
        log.warning("int8: pruned weights are not all zero after quantization (not quantized: %s)",
                    result["not_quantized"])


def write_tensorboard(run: RunDir, entries: dict[str, Any], step: int) -> None:
    """Collapse, multiply-adds and int8 results as TensorBoard scalars (and text) at ``step``."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run.tb)) as tb:
        tb.add_scalar("layers/collapsed", len(entries["collapsed_layers"]), step)
        tb.add_scalar("layers/macs_sparse_fraction", entries["macs_sparse"] / max(entries["macs_dense"], 1), step)
        text = ", ".join(entries["collapsed_layers"]) or "none"
        tb.add_text("layers/collapsed_layers", text, step)
        for name, layer in entries["layers"].items():
            tb.add_scalar(f"layers_final_sparsity/{name}", layer["sparsity"], step)
        q = entries.get("quantization")
        if q and "test_acc" in q:
            tb.add_scalar("quantization/test_acc", q["test_acc"], step)
            tb.add_scalar("quantization/fp32_test_acc", q["fp32_test_acc"], step)
            tb.add_scalar("quantization/zeros_preserved", float(q["zeros_preserved"]), step)


def run_title(cfg: DictConfig) -> str:
    """'<method> <model>-<dataset> sparsity <s> seed <n>' for figure titles."""
    return f"{cfg.method.name} {cfg.model.name}-{cfg.dataset.name} sparsity {cfg.sparsity} seed {cfg.seed}"


def at_run_end(cfg: DictConfig, model: torch.nn.Module, masks: Masks, data: Any, run: RunDir,
               quantize: bool | None = None) -> dict[str, Any]:
    """Everything this module adds to a finished run's summary; also the figure and TensorBoard.

    A failure here is logged and recorded, never lost training: the run's summary is still written.
    ``quantize`` overrides ``cfg.quantize`` (False: leave int8 for later, e.g. when the job is being
    pre-empted; ``quantize=true`` on the finished run does it then).
    """
    input_shape = (data.in_channels, data.image_size, data.image_size)
    entries = analyse(model, masks, input_shape)
    try:
        plot_layer_sparsity(entries["layers"], run.path / FIGURE_FILE, title=run_title(cfg))
        entries["layer_figure"] = FIGURE_FILE
    except Exception as exc:  # a figure must never cost a finished run
        log.warning("layer sparsity figure not written: %s", exc)
    if cfg.get("quantize", False) if quantize is None else quantize:
        try:
            result = quantize_and_evaluate(model, masks, data, settings_from_config(cfg), cfg.eval_batch_size)
            entries["quantization"] = merge_quantization(None, result)
            log_quantization(result)
        except Exception as exc:  # e.g. a model FX cannot trace: keep the run, record why
            log.error("int8 quantization failed: %s: %s", type(exc).__name__, exc)
            entries["quantization"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_tensorboard(run, entries, int(cfg.epochs))
    return entries


def quantize_run_folder(path: str | Path, settings: QuantSettings | None = None, data_root: str | None = None,
                        eval_batch_size: int = 1000) -> dict[str, Any]:
    """Quantize the finished run in ``path`` and merge the result into its summary.json (atomically,
    under the run's lock, every other key kept). ``settings`` default to the run config's."""
    from flipout_repro.inspect_run import load_run, read_summary
    from flipout_repro.results import RunLock, write_json

    loaded = load_run(path, "cpu", data_root=data_root)
    settings = settings or settings_from_config(loaded.cfg)
    result = quantize_and_evaluate(loaded.model, loaded.masks, loaded.data, settings, eval_batch_size)
    log_quantization(result)
    with RunLock(loaded.run):
        summary = read_summary(loaded.run)
        summary["quantization"] = merge_quantization(summary.get("quantization"), result)
        write_json(loaded.run.summary, summary)
    return summary["quantization"]
