"""What ``precision`` (auto, bf16, fp32) computes in on a device: part of a run's protocol, so the
runner, the build and the sweep status all ask it.
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
    """``cfg`` with ``precision=auto`` replaced by what it computes in on ``device`` (bf16 or fp32): the
    precision is part of the run's protocol (config/identity.py), and its config.yaml says which."""
    if cfg.precision != "auto":
        return cfg
    cfg = cfg.copy()
    cfg.precision = resolved_precision("auto", device)
    return cfg
