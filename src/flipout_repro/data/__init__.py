"""Data sets behind one interface (``steps_per_epoch``, ``epoch_order``, ``train_batches``, ``test_batches``,
``val_batches``, ``in_channels``, ``image_size``, ``train_y``/``test_y``/``val_y``, ``to``):

- :class:`TensorData` (data/tensor.py): the whole set as uint8 tensors on the training device, batched
  augmentation; CIFAR, MNIST, the bundled ``mnist5k``, Imagenette, Tiny-ImageNet (data/loaders.py).
- :class:`FolderData` (data/folder.py): ImageNet-scale sets streamed from JPEG files through DataLoader
  workers.

:func:`load` picks one by ``dataset.name`` and holds out ``dataset.train_fraction`` (data/split.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch

from flipout_repro.data.errors import DataError, DataFileError
from flipout_repro.data.files import allocating
from flipout_repro.data.folder import STREAMING, FolderData, load_folder
from flipout_repro.data.loaders import LOADERS
from flipout_repro.data.rules import check_source
from flipout_repro.data.split import holdout_split
from flipout_repro.data.tensor import TensorData, resize_images

#: what :func:`load` returns
DataSet = Union[TensorData, FolderData]
#: training images of each data set as its files hold them (before ``train_fraction``): what a plan of
#: runs counts an epoch as (reporting/plan.py)
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "mnist": 60_000, "mnist5k": 4_000, "imagenette": 9_469,
                "tiny_imagenet": 100_000, "imagenet": 1_281_167}
__all__ = ["DataError", "DataFileError", "DataSet", "FolderData", "LOADERS", "STREAMING", "TRAIN_IMAGES",
           "TensorData", "holdout_split", "load", "resize_images"]


def load(name: str, root: str | Path, download: bool, device: torch.device, mean: list[float],
         std: list[float], crop_padding: int = 0, flip: bool = False, resize: int | None = None, *,
         train_fraction: float = 1.0, image_size: int | None = None, eval_resize: int | None = None,
         workers: int | None = None, num_classes: int | None = None, decode: str = "workers",
         verify: bool = False, crop_fill: str = "zeros", drop_last: bool = False) -> DataSet:
    """Load data set ``name`` for training on ``device`` (``root``/``download`` apply to file-based sets),
    resized once to ``resize`` x ``resize`` when given, with ``1 - train_fraction`` of the training set
    held out. Streamed sets (:data:`STREAMING`) crop to ``image_size`` and, for evaluation, resize to
    ``eval_resize`` first; ``workers`` read them (None: :func:`default_workers`) and decode them, or, with
    ``decode="device"``, the training process decodes them on ``device`` (data/jpeg_device.py). ``verify``
reads every file of a streamed set once first and names every one that cannot be read (an in-memory set
reads all its files at load anyway). In-memory sets only: ``crop_fill`` (zeros or reflect) and
``drop_last``."""
    check_source(name, download, eval_resize, image_size, decode)  # data/rules.py: the one rule
    if name in STREAMING:
        return load_folder(name, root, device, mean, std, image_size, eval_resize, flip, workers, train_fraction,
                           num_classes, decode, verify)
    train_x, train_y, test_x, test_y = LOADERS[name](Path(root), download)
    if resize:
        n = len(train_x) + len(test_x)
        with allocating("dataset.resize", resize, f"{n} images of {resize}x{resize}",
                        n * train_x.shape[1] * resize * resize):
            train_x, test_x = resize_images(train_x, resize), resize_images(test_x, resize)
    channels = train_x.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"dataset.mean/std have {len(mean)}/{len(std)} values for {channels}-channel images")
    val = {}
    split = holdout_split(len(train_y), train_fraction)
    if split is not None:
        keep, held = (torch.from_numpy(i) for i in split)
        val = {"val_x": train_x[held].to(device), "val_y": train_y[held].to(device)}
        train_x, train_y = train_x[keep], train_y[keep]
    as_t = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
    return TensorData(
        train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device),
        as_t(mean), as_t(std), crop_padding, flip, crop_fill=crop_fill, drop_last=drop_last, **val,
    )
