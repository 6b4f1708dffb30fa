"""Evaluation of a model on the test split (or the held-out part of the training set), and the autocast
context both training and evaluation run under."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from flipout_repro.data import DataSet


def autocast(device_type: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast to ``dtype``, or nothing when ``dtype`` is None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def tta_logits(forward: Callable, x: torch.Tensor, level: int) -> torch.Tensor:
    """The logits of ``x`` averaged over airbench's test-time views (KellerJordan/cifar10-airbench f1c599c,
    legacy/airbench94.py:307-340): level 0 the images; 1 the mean of the images and their mirror images;
    2 half of level 1 plus a quarter of level 1 of each of two one-pixel shifts (up-left and down-right,
    of the images reflect-padded by one pixel): 6 forward passes."""
    if level == 0:
        return forward(x)

    def mirror(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * forward(v) + 0.5 * forward(v.flip(-1))

    if level == 1:
        return mirror(x)
    side = x.shape[-1]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * mirror(padded[..., :side, :side]) + 0.5 * mirror(padded[..., 2:, 2:])
    return 0.5 * mirror(x) + 0.5 * shifted


@torch.no_grad()
def evaluate(forward: Callable, data: DataSet, batch_size: int, autocast_dtype: torch.dtype | None = None,
             channels_last: bool = False, module: nn.Module | None = None,
             split: str = "test", tta: int = 0) -> tuple[float, float]:
    """(mean cross-entropy, accuracy %) on the test set (``split="val"``: the held-out part of the
    training set), of the logits averaged over the ``tta`` level's views (:func:`tta_logits`); ``module``
    (default ``forward``) is put in eval mode for the duration."""
    module = module if module is not None else forward
    was_training = module.training
    module.eval()
    val = split == "val"
    labels = data.val_y if val else data.test_y
    batches = data.val_batches(batch_size) if val else data.test_batches(batch_size)
    dev = labels.device
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dev.type, autocast_dtype):
            out = tta_logits(forward, x, tta)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
    module.train(was_training)
    n = len(labels)
    return float(loss_sum) / n, 100.0 * float(correct) / n
