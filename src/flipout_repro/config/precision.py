"""What ``precision`` (auto, bf16, fp32) computes in on a device, and the precision a run's folder is
hashed with. A leaf: the runner, the build and the sweep status all ask it.
"""
from __future__ import annotations

import torch
from omegaconf import DictConfig


def has_native_bf16(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA GPUs of compute capability 8.0 (Ampere) and newer only.

    ``torch.cuda.is_bf16_supported()`` also says yes on older GPUs (V100, T4), where bf16 is emulated:
    slower than fp32, and cuDNN has no bf16 convolutions there, so ``precision=auto`` picks fp32 on them.
    """
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def resolved_precision(precision: str, device: torch.device) -> str:
    """``bf16`` or ``fp32``: what ``precision`` (auto, bf16, fp32) computes in on ``device``."""
    return "bf16" if precision == "bf16" or (precision == "auto" and has_native_bf16(device)) else "fp32"


def pin_precision(cfg: DictConfig, device: torch.device) -> DictConfig:
    """``cfg`` with ``precision=auto`` replaced by ``bf16`` where it computes in bf16 on ``device``, so the
    precision decides the run's folder. Where auto means fp32 it is left as it is: run folders
    of CPU runs (and of GPUs without native bf16) keep the hash of ``auto``."""
    if cfg.precision != "auto" or resolved_precision("auto", device) != "bf16":
        return cfg
    cfg = cfg.copy()
    cfg.precision = "bf16"
    return cfg
