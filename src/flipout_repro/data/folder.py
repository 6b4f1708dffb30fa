"""Data sets too large for the device, streamed from JPEG files in torchvision's ImageFolder layout
(``<root>/train/<class>/*.JPEG``, ``<root>/val/<class>/*.JPEG``): decoded and augmented in DataLoader
worker processes, handed over as uint8 batches (pinned when training on CUDA, a few batches decoded ahead),
normalised on the device. :class:`FolderData` has TensorData's interface, so the loop does not change.
``dataset.decode=device`` moves the decoding and the crop to the training device (data/jpeg_device.py).

The recipe is the standard ImageNet one (pytorch/examples imagenet/main.py:241-258 at 77f55b9, which
FORCE's train_imagenet.py:242-271 at 7494eed copies): training ``RandomResizedCrop(224)`` (scale 0.08-1,
ratio 3/4-4/3, bilinear) then ``RandomHorizontalFlip()``; evaluation ``Resize(256)`` (shorter side) then
``CenterCrop(224)``; ImageNet's mean and std.

Randomness. An epoch's ``order`` is a permutation drawn from the run's generator, as TensorData's, plus
one more number drawn after it, the epoch key, stored as the last entry (so a mid-epoch checkpoint, which
stores ``order``, stores the key too). Image ``i``'s crop and flip in that epoch are torchvision's own
draws under torch's RNG seeded with a hash of (key, i), made in the worker. An image's augmentation thus
depends on the run's seed, the epoch and the image only: not on the number of workers, the batch size,
which worker decodes it, or a stop and resume. Each DataLoader has its own generator, seeded with the epoch
key (0 for evaluation), for the base seed of its workers: no iterator draws from torch's global generator,
whose stream (FlipOut's noise, a method's random scores) thus does not depend on how many iterators were made
(a resumed half-epoch makes one more than an uninterrupted one).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from flipout_repro.data.crop_draw import draw_crop
from flipout_repro.data.errors import DataError, DataFileError
from flipout_repro.data.files import check_files, class_index, open_rgb, probe_image
from flipout_repro.data.jpeg_device import ImageBytes
from flipout_repro.data.split import holdout_split

#: data sets read this way (``dataset.name``)
STREAMING = ("imagenet",)
#: batches each worker decodes ahead (DataLoader's prefetch_factor)
PREFETCH = 4


def default_workers() -> int:
    """``dataset.workers=null``: the CPUs this process may use but one (left to the training process),
    at least 1 and at most 16. JPEG decoding and the crop take a few ms per ImageNet image on one core,
    so a fast GPU needs many workers; more than 16 rarely pay."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(16, max(1, cpus - 1))


class ImageFiles(Dataset):
    """uint8 (3, size, size) images of ``files``: augmented with the per-image seeds of the epoch
    ``key``, or, when ``key`` is None, resized (shorter side ``eval_resize``) and center-cropped."""

    def __init__(self, files: list[str], size: int, eval_resize: int, flip: bool,
                 key: int | None = None) -> None:
        self.files, self.size, self.eval_resize, self.flip, self.key = files, size, eval_resize, flip, key

    def __len__(self) -> int:
        return len(self.files)

    collate = None  # DataLoader's default: stacks the uint8 images

    def pixels(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The batch on ``device`` (decoded and augmented already)."""
        return batch.to(device, non_blocking=True)

    def __getitem__(self, i: int) -> torch.Tensor:
        # torchvision and PIL where a streamed set uses them: importing them costs every other run a second
        import torchvision.transforms.functional as TF

        img = open_rgb(self.files[i])  # torchvision's default loader; a bad file: DataError naming it
        if self.key is None:
            return TF.pil_to_tensor(TF.center_crop(TF.resize(img, self.eval_resize), self.size))
        top, left, h, w, flip = draw_crop(img, self.key, i, self.flip)  # data/crop_draw.py
        img = TF.resized_crop(img, top, left, h, w, [self.size, self.size])  # bilinear, as RandomResizedCrop
        return TF.pil_to_tensor(TF.hflip(img) if flip else img)


class _Slices:
    """A batch sampler: ``indices[b:b + batch_size]`` for b from batch ``start`` on."""

    def __init__(self, indices: np.ndarray, batch_size: int, start: int = 0) -> None:
        self.indices, self.batch_size, self.start = indices, batch_size, start

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start * self.batch_size, len(self.indices), self.batch_size):
            yield self.indices[b:b + self.batch_size].tolist()

    def __len__(self) -> int:
        return max(0, -(-len(self.indices) // self.batch_size) - self.start)


@dataclass
class FolderData:
    """Image files and their labels; labels, mean and std on the training device."""

    train_files: list[str]
    train_y: torch.Tensor
    test_files: list[str]
    test_y: torch.Tensor
    mean: torch.Tensor  # (1, 3, 1, 1), in [0, 1] pixel units
    std: torch.Tensor
    size: int = 224
    eval_resize: int = 256
    flip: bool = True
    workers: int = 0
    #: ``workers`` (PIL in the DataLoader workers) or ``device`` (data/jpeg_device.py)
    decode: str = "workers"
    val_files: list[str] | None = None
    val_y: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)

    @property
    def in_channels(self) -> int:
        """Image channels (every image is converted to RGB)."""
        return 3

    @property
    def image_size(self) -> int:
        """Side of the crops the network sees."""
        return self.size

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per epoch (the last one may be smaller, as with drop_last=False)."""
        return -(-len(self.train_y) // batch_size)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float32, normalised per channel (ToTensor + Normalize)."""
        return (x.float().div_(255.0) - self.mean) / self.std

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        """A fresh permutation of the training set, then the epoch's augmentation key (one int64 more)."""
        dev = self.train_y.device
        perm = torch.randperm(len(self.train_y), device=dev, generator=generator)
        key = torch.randint(0, 2 ** 62, (1,), device=dev, generator=generator)
        return torch.cat([perm, key])

    def train_batches(self, batch_size: int, generator: torch.Generator, order: torch.Tensor | None = None,
                      start: int = 0, epoch: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented, normalised training batches in ``order`` (a new one if None), from batch ``start`` on
        (``epoch`` does not matter here: every image's augmentation is drawn from the order's key)."""
        if order is None:
            order = self.epoch_order(generator)
        host = order.cpu().numpy()
        perm, key = order[:-1], int(host[-1])
        images = self._images(self.train_files, key)
        for (b, e), x in self._stream(images, host[:-1], batch_size, start):
            yield x, self.train_y[perm[b:e]]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test set (``val/``) in order: resized, center-cropped, normalised."""
        return self._plain(self.test_files, self.test_y, batch_size)

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The held-out part of ``train/`` (``dataset.train_fraction`` < 1), as the test set."""
        if self.val_y is None:
            raise ValueError("this data set holds nothing out: set dataset.train_fraction below 1")
        return self._plain(self.val_files, self.val_y, batch_size)

    def eval_train_batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """Training images ``indices`` with the evaluation transform, normalised (int8 calibration)."""
        images = self._images(self.train_files)
        for _, x in self._stream(images, indices.cpu().numpy(), batch_size):
            yield x

    def to(self, device: torch.device) -> "FolderData":
        """The same data set with labels, mean and std on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v.to(device) for k, v in moved.items()
                                            if isinstance(v, torch.Tensor)})

    def _plain(self, files: list[str], labels: torch.Tensor,
               batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images = self._images(files)
        for (b, e), x in self._stream(images, np.arange(len(files)), batch_size):
            yield x, labels[b:e]

    def _images(self, files: list[str], key: int | None = None) -> ImageFiles | ImageBytes:
        kind = ImageBytes if self.decode == "device" else ImageFiles
        return kind(files, self.size, self.eval_resize, self.flip, key)

    def _stream(self, images: ImageFiles | ImageBytes, indices: np.ndarray, batch_size: int,
                start: int = 0) -> Iterator[tuple[tuple[int, int], torch.Tensor]]:
        """((begin, end) positions in ``indices``, normalised images on the device), batch by batch."""
        dev = self.train_y.device
        # not torch's global generator (see the module's docstring); no image depends on this seed
        seeded = torch.Generator().manual_seed(images.key or 0)
        loader = DataLoader(images, batch_sampler=_Slices(indices, batch_size, start), num_workers=self.workers,
                            collate_fn=images.collate, pin_memory=dev.type == "cuda",
                            prefetch_factor=PREFETCH if self.workers else None, generator=seeded)
        try:
            for i, x in enumerate(loader, start=start):
                b = i * batch_size
                yield (b, min(b + batch_size, len(indices))), self.normalize(images.pixels(x, dev))
        except DataError as exc:  # from a worker, the message carries its traceback: keep the last line
            line = str(exc).strip().splitlines()[-1].split("DataError: ", 1)[-1]
            raise DataFileError(f"{line} (dataset.verify=true names every such file before a run starts)") from None


def _scan(folder: Path, name: str) -> tuple[list[str], list[int], list[str]]:
    """(files, labels, class names) of one ImageFolder split, or a one-line DataError."""
    import torchvision  # only a streamed set needs it (see ImageFiles.__getitem__)

    fix = ("set dataset.root to the folder that holds train/<class>/*.JPEG and val/<class>/*.JPEG (torchvision's"
           " ImageFolder layout; ImageNet's validation images sorted into class folders)")
    if not folder.is_dir():
        raise DataError(f"{name} not found: {folder.resolve()} is not a folder: {fix}")
    try:
        ds = torchvision.datasets.ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as exc:  # no class folder, or no image in them
        raise DataError(f"{name}: {folder.resolve()} holds no images by class ({exc}): {fix}") from exc
    return [p for p, _ in ds.samples], [y for _, y in ds.samples], ds.classes


def load_folder(name: str, root: str | Path, device: torch.device, mean: list[float], std: list[float],
                size: int, eval_resize: int, flip: bool, workers: int | None = None, train_fraction: float = 1.0,
                num_classes: int | None = None, decode: str = "workers", verify: bool = False) -> FolderData:
    """The data set in ``root`` (train/ and val/ by class), labels on ``device``; ``train_fraction`` < 1
    holds part of train/ out (data/split.py), ``workers`` None is :func:`default_workers`. ``verify`` reads
    every file once first, as ``decode`` will, and names every one that cannot be read."""
    probe_image("dataset.image_size", size)  # the crops, before any worker or run folder
    probe_image("dataset.eval_resize", eval_resize)
    root = Path(root)
    train_files, train_y, classes = _scan(root / "train", name)
    test_files, test_y, test_classes = _scan(root / "val", name)
    class_index(name, root / "train", classes, root / "val", test_classes)  # the same classes, so the same labels
    if verify:
        n = default_workers() if workers is None else workers
        check_files(name, train_files + test_files, _reader(decode), n)
    if num_classes is not None and len(classes) != num_classes:
        raise DataError(f"{name}: {root / 'train'} holds {len(classes)} class folders, the config says "
                        f"dataset.num_classes={num_classes}: set dataset.num_classes={len(classes)}")
    if len(mean) != 3 or len(std) != 3:
        raise DataError(f"dataset.mean/std have {len(mean)}/{len(std)} values for RGB images: give 3 each")
    as_t = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
    labels = torch.tensor(train_y, dtype=torch.int64)
    val_files = val_y = None
    split = holdout_split(len(train_files), train_fraction)
    if split is not None:
        keep, held = split
        val_files, val_y = [train_files[i] for i in held], labels[torch.from_numpy(held)].to(device)
        train_files, labels = [train_files[i] for i in keep], labels[torch.from_numpy(keep)]
    test_labels = torch.tensor(test_y, dtype=torch.int64).to(device)
    return FolderData(train_files, labels.to(device), test_files, test_labels, as_t(mean), as_t(std), size,
                      eval_resize, flip, default_workers() if workers is None else workers, decode, val_files,
                      val_y, classes)


def _reader(decode: str):
    """How ``dataset.verify`` reads a file: as the workers decode it (PIL), or as the device will
    (torchvision's libjpeg-turbo decoder on the CPU, JPEG only)."""
    if decode != "device":
        return open_rgb

    def decode_on_cpu(path: str) -> None:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

        try:
            decode_jpeg(read_file(path), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError) as exc:
            raise DataError(f"{path}: {exc}") from exc
    return decode_on_cpu
