"""Post-training static int8 quantization of a pruned network, and the check that its zeros survive.

The recipe: qint8 weights, quint8 activations, minmax / per-channel / histogram
observers, calibration on training data. We use torch's FX graph mode (``prepare_fx``/``convert_fx``
with a QConfigMapping) so that the plain nn.Module models need no QuantStub/DeQuantStub edits; Conv,
BatchNorm and ReLU are fused first, so a BatchNorm is folded into its conv (a per-output-channel
factor: a pruned weight stays exactly zero). Quantization runs on CPU.

Observers (``observer``):
  minmax       activations MinMax (quint8, affine), weights MinMax per tensor (qint8, symmetric)
  per_channel  activations MinMax, weights per-channel MinMax (qint8, symmetric)
  histogram    activations Histogram (L2-optimal range), weights per-channel MinMax (torch's default)
Symmetric weights have zero point 0, so a pruned weight quantizes to the integer 0 and dequantizes to
exactly 0.0; :func:`check_zeros` verifies it on the converted model rather than trusting it.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from flipout_repro.analysis.finished_run import load_run, read_summary
from flipout_repro.analysis.int8_export import int8_file_name, save_int8
from flipout_repro.sparsity.masking import Masks
from flipout_repro.rundir import RunLock, write_json
from flipout_repro.config.schema import BACKENDS, OBSERVERS
from flipout_repro.training.evaluate import evaluate

log = logging.getLogger("flipout_repro")


@dataclasses.dataclass(frozen=True)
class QuantSettings:
    """How to quantize: observer, backend, and the calibration pass: ``calibration_batches`` batches of
    training images, or ``"all"``: one pass over the whole training set."""

    observer: str = "histogram"
    calibration_batches: int | str = "all"
    batch_size: int = 128
    backend: str = "x86"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.observer not in OBSERVERS:
            raise ValueError(f"observer={self.observer!r} is not known: use one of {', '.join(OBSERVERS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not known: use one of {', '.join(BACKENDS)}")
        for key in ("calibration_batches", "batch_size"):
            value = getattr(self, key)
            if key == "calibration_batches" and value == "all":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} must be a positive integer, e.g. {key}=32"
                                 + (" (or all)" if key == "calibration_batches" else ""))

    @property
    def key(self) -> str:
        """What a result is kept under in summary.json's ``quantization.by_settings`` (and what the
        tables' int8 column names): ``histogram-x86-calib_all``, ``minmax-qnnpack-calib_8x128``."""
        calib = "all" if self.calibration_batches == "all" else f"{self.calibration_batches}x{self.batch_size}"
        return f"{self.observer}-{self.backend}-calib_{calib}"


def qconfig_mapping(observer: str, backend: str) -> Any:
    """torch's default QConfigMapping for ``backend`` with the global qconfig set by ``observer``."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver

    # fbgemm/x86 kernels accumulate in 16 bits on CPUs without VNNI: 7-bit activations avoid overflow
    reduce_range = backend in ("x86", "fbgemm")
    act_cls = HistogramObserver if observer == "histogram" else MinMaxObserver
    activation = act_cls.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=reduce_range)
    if observer == "minmax":
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    else:
        weight = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    return get_default_qconfig_mapping(backend).set_global(QConfig(activation=activation, weight=weight))


def calibration_images(n_train: int, settings: QuantSettings) -> int:
    """How many of the ``n_train`` training images the calibration pass sees."""
    if settings.calibration_batches == "all":
        return n_train
    return min(n_train, settings.calibration_batches * settings.batch_size)


def calibration_batches(data: Any, settings: QuantSettings) -> Iterator[torch.Tensor]:
    """Normalised, un-augmented training images on CPU, in a seeded random order, batch by batch: all of
    them (``calibration_batches="all"``) or the first ``calibration_batches`` batches.

    The reference code calibrates on one pass of its training loader, augmentation included; here the
    images are un-augmented (the network is evaluated on un-augmented images too)."""
    gen = torch.Generator().manual_seed(settings.seed)
    n = len(data.train_y)
    order = torch.randperm(n, generator=gen)[:calibration_images(n, settings)]
    for x in data.eval_train_batches(order, settings.batch_size):
        yield x.cpu()


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Silence torch's notices that eager/FX quantization is moving to torchao (the API still works
    in the installed torch; the numbers are what we report)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantized tensor creation).*")
        yield


@torch.no_grad()
def quantize_model(model: nn.Module, batches: Iterator[torch.Tensor], settings: QuantSettings) -> nn.Module:
    """An int8 copy of ``model`` (left untouched), calibrated on ``batches``; CPU, eval mode."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = settings.backend
    float_model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
    batches = iter(batches)
    first = next(batches)
    with quiet_deprecations():
        prepared = prepare_fx(float_model, qconfig_mapping(settings.observer, settings.backend),
                              example_inputs=(first,))
        prepared(first)
        for x in batches:
            prepared(x)
        return convert_fx(prepared).eval()


def check_zeros(qmodel: nn.Module, masks: Masks) -> dict[str, Any]:
    """Do the pruned weights dequantize to exactly 0 in ``qmodel``? Counts per model, not per layer.

    ``pruned_nonzero`` (should be 0): pruned weights that came back nonzero; ``newly_zero``: kept
    weights that int8 rounding turned into 0; ``not_quantized``: prunable layers left in float.
    """
    modules = dict(qmodel.named_modules())
    pruned = pruned_nonzero = newly_zero = 0
    not_quantized = []
    for name, mask in zip(masks.names, masks.values):
        module = modules.get(name.rsplit(".", 1)[0])
        weight_fn = getattr(module, "weight", None)
        if not callable(weight_fn):  # quantized modules expose weight() -> a quantized tensor
            not_quantized.append(name)
            continue
        w = weight_fn().dequantize()
        keep = mask.detach().cpu().bool()
        pruned += int((~keep).sum())
        pruned_nonzero += int((w[~keep] != 0).sum())
        newly_zero += int((w[keep] == 0).sum())
    return {"zeros_preserved": pruned_nonzero == 0 and not not_quantized, "pruned_weights": pruned,
            "pruned_nonzero": pruned_nonzero, "newly_zero": newly_zero, "not_quantized": not_quantized}


def cpu_data(data: Any) -> Any:
    """The same data set on CPU (a no-op when it is there already; a streamed set moves its labels)."""
    return data.to(torch.device("cpu"))


def quantize_and_evaluate(model: nn.Module, masks: Masks, data: Any, settings: QuantSettings,
                          eval_batch_size: int = 1000, save_dir: Path | None = None) -> dict[str, Any]:
    """Quantize ``model``, then return int8 and fp32 test accuracy (both on CPU) and the zero check; with
    ``save_dir``, the int8 model is saved there as TorchScript (analysis/int8_export.py, ``model_file``)."""
    t0 = time.perf_counter()
    data = cpu_data(data)
    qmodel = quantize_model(model, calibration_batches(data, settings), settings)
    zeros = check_zeros(qmodel, masks)
    float_model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
    _, fp32_acc = evaluate(float_model, data, eval_batch_size)
    with quiet_deprecations():
        _, int8_acc = evaluate(qmodel, data, eval_batch_size)
        saved = _save_int8(qmodel, data, settings, save_dir) if save_dir is not None else {}
    n_calib = calibration_images(len(data.train_y), settings)
    return {
        # acc_drop: a difference of two percentages of the same test set, rounded to 1e-6 (fp32 noise)
        "test_acc": int8_acc, "fp32_test_acc": fp32_acc, "acc_drop": round(fp32_acc - int8_acc, 6),
        **zeros,
        "settings": settings.key, "observer": settings.observer, "backend": settings.backend,
        "calibration_batches": -(-n_calib // settings.batch_size), "calibration_images": n_calib,
        "weights": "qint8 per-tensor symmetric" if settings.observer == "minmax"
        else "qint8 per-channel symmetric",
        "activations": f"quint8 per-tensor affine ({'histogram' if settings.observer == 'histogram' else 'minmax'})",
        "mode": "torch.ao.quantization FX graph mode, post-training static", "device": "cpu",
        "torch": torch.__version__, "wall_time_s": time.perf_counter() - t0, **saved,
    }


def _save_int8(qmodel: nn.Module, data: Any, settings: QuantSettings, save_dir: Path) -> dict[str, Any]:
    """Save the measured int8 model; a failure is recorded, never fatal (the accuracy is measured)."""
    path = Path(save_dir) / int8_file_name(settings)
    try:
        x, _ = next(iter(data.test_batches(8)))
        save_int8(qmodel, x, path)
        return {"model_file": path.name}
    except Exception as exc:  # e.g. a model TorchScript cannot trace
        log.warning("int8 model not saved: %s: %s", type(exc).__name__, exc)
        return {"model_file": None, "model_file_error": f"{type(exc).__name__}: {exc}"}


def settings_from_config(cfg: DictConfig) -> QuantSettings:
    """QuantSettings from a run config (calibration batches of the run's batch size, the run's seed)."""
    q = cfg.quantization
    batches = q.calibration_batches
    return QuantSettings(observer=q.observer, calibration_batches=batches if batches == "all" else int(batches),
                         batch_size=int(cfg.batch_size), backend=q.backend, seed=int(cfg.seed))


def merge_quantization(previous: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """The newest result at the top (``test_acc`` etc.); every result kept under its settings' key in
    ``by_settings`` (QuantSettings.key), and the newest of each observer in ``by_observer`` (a summary
    without ``by_settings`` holds only that, and stays readable)."""
    plain = {k: v for k, v in result.items() if k not in ("by_observer", "by_settings")}
    by_observer = {**(previous or {}).get("by_observer", {}), result["observer"]: plain}
    by_settings = dict((previous or {}).get("by_settings", {}))
    if "settings" in result:
        by_settings[result["settings"]] = plain
    return {**result, "by_observer": by_observer, "by_settings": by_settings}


def result_for(quantization: dict[str, Any] | None, settings: QuantSettings) -> dict[str, Any] | None:
    """The int8 result with ``settings`` in a summary's ``quantization`` entry, None if there is none (or it
    failed). A result from before the settings were keyed has no key and is not taken for any."""
    found = ((quantization or {}).get("by_settings") or {}).get(settings.key)
    return found if found and "test_acc" in found else None


def log_quantization(result: dict[str, Any]) -> None:
    """One line: int8 vs fp32 accuracy and the zero check."""
    log.info("int8 (%s, %s): test %.2f%% vs fp32 %.2f%% on CPU; pruned zeros preserved: %s (%d pruned, %d "
             "nonzero after)", result["observer"], result["backend"], result["test_acc"], result["fp32_test_acc"],
             result["zeros_preserved"], result["pruned_weights"], result["pruned_nonzero"])
    if not result["zeros_preserved"]:
        log.warning("int8: pruned weights are not all zero after quantization (not quantized: %s)",
                    result["not_quantized"])


def quantize_run_folder(path: str | Path, settings: QuantSettings | None = None, data_root: str | None = None,
                        eval_batch_size: int = 1000) -> dict[str, Any]:
    """Quantize the finished run in ``path`` and merge the result into its summary.json (atomically,
    under the run's lock, every other key kept). ``settings`` default to the run config's."""
    loaded = load_run(path, "cpu", data_root=data_root)
    settings = settings or settings_from_config(loaded.cfg)
    result = quantize_and_evaluate(loaded.model, loaded.masks, loaded.data, settings, eval_batch_size,
                                   save_dir=loaded.run.path)
    log_quantization(result)
    with RunLock(loaded.run, wait=60.0):  # another tool writing the summary: wait, then merge into its result
        summary = read_summary(loaded.run)
        summary["quantization"] = merge_quantization(summary.get("quantization"), result)
        write_json(loaded.run.summary, summary)
    return summary["quantization"]
