"""The int8 model that ``flipout-quantize`` (and ``quantize=true``) measured, saved so it can be used.

The FX-converted model is a GraphModule of quantized modules; we save it as TorchScript, traced on a
batch of test images (``torch.jit.trace``), because that loads back without our code, the model's
class or a second calibration: ``torch.jit.load(path)`` gives a module whose outputs are the measured
model's (tests/analysis/test_int8_export.py checks the reloaded model's test accuracy is the recorded
one). The batch size is not baked in (the traced graph reads it from the input). One file per
quantization setting, named by :func:`int8_file_name`, in the run folder. torch 2.14 marks torch.jit as
deprecated in favour of torch.export, whose quantized-op support is not settled; TorchScript still loads
reliably, so its FutureWarnings are silenced here.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flipout_repro.rundir import atomic_open


def int8_file_name(settings: Any) -> str:
    """``int8_<observer>_<backend>_calib<batches>x<batch size>.pt`` for a QuantSettings."""
    return (f"int8_{settings.observer}_{settings.backend}_calib{settings.calibration_batches}x"
            f"{settings.batch_size}.pt")


@torch.no_grad()
def save_int8(qmodel: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Trace ``qmodel`` (CPU, eval) on ``example`` and write it as TorchScript to ``path`` (atomically)."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        traced = torch.jit.trace(qmodel.eval(), example.cpu(), check_trace=False)
        with atomic_open(path, "wb") as fh:
            torch.jit.save(traced, fh)
    return path


def load_int8(path: Path) -> torch.jit.ScriptModule:
    """The saved int8 model (CPU, eval mode): ``model(images)`` gives logits as the measured one did."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        return torch.jit.load(str(path), map_location="cpu").eval()
