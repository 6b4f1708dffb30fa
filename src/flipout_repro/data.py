"""Data sets as uint8 tensors on the device, with batched per-sample augmentation.

torchvision reads the files (CIFAR pickle batches, MNIST IDX); after that everything is a tensor on the
training device: batches are index slices, normalisation and augmentation (random crop with zero
padding, horizontal flip, each drawn per sample) are a few batched tensor ops. The bundled ``mnist5k``
subset ships inside the package, so it needs neither torchvision's files nor a network.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F


class DataError(RuntimeError):
    """A data set that cannot be loaded; the message names the folder and the flag to change."""


@dataclass
class TensorData:
    """Train and test images (uint8, N x C x H x W) and labels (int64), all on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # (1, C, 1, 1), in [0, 1] pixel units
    std: torch.Tensor
    crop_padding: int = 0
    flip: bool = False

    @property
    def in_channels(self) -> int:
        """Image channels."""
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        """Image side (images are square)."""
        return self.train_x.shape[-1]

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per epoch (the last one may be smaller, as with drop_last=False)."""
        return -(-len(self.train_y) // batch_size)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float32, normalised per channel."""
        return (x.float().div_(255.0) - self.mean) / self.std

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        """A fresh permutation of the training set (one per epoch)."""
        return torch.randperm(len(self.train_y), device=self.train_y.device, generator=generator)

    def train_batches(self, batch_size: int, generator: torch.Generator, order: torch.Tensor | None = None,
                      start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled, augmented, normalised training batches in ``order`` (a new one if None), from
        batch number ``start`` on. Lazy: a batch's augmentation is drawn only when it is requested."""
        n = len(self.train_y)
        if order is None:
            order = self.epoch_order(generator)
        for begin in range(start * batch_size, n, batch_size):
            idx = order[begin:begin + batch_size]
            x = self.train_x[idx]
            if self.crop_padding or self.flip:
                x = random_crop_flip(x, self.crop_padding, self.flip, generator)
            yield self.normalize(x), self.train_y[idx]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test set in order, normalised, without augmentation."""
        for start in range(0, len(self.test_y), batch_size):
            yield self.normalize(self.test_x[start:start + batch_size]), self.test_y[start:start + batch_size]


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of a zero-padded batch and per-sample horizontal flip, in one gather.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` applied to
    every image independently (zero fill before normalisation, as in the paper's pipeline).
    """
    n, c, h, w = x.shape
    dev = x.device
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n, 1), device=dev, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=dev, generator=generator)
    rows = top + torch.arange(h, device=dev)
    cols = left + torch.arange(w, device=dev)
    if flip:
        flipped = torch.rand(n, 1, device=dev, generator=generator) < 0.5
        cols = torch.where(flipped, cols.flip(1), cols)
    return x[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def resize_images(x: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> (N, C, side, side), bilinear (half-pixel centres, as PIL's bilinear
    resize when enlarging, which the FlipOut code's ``transforms.Resize`` does per image), rounded back
    to uint8. Done once at load, in chunks."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    out = torch.empty((*x.shape[:2], side, side), dtype=torch.uint8)
    for i in range(0, len(x), 4096):
        y = F.interpolate(x[i:i + 4096].float(), size=(side, side), mode="bilinear", align_corners=False,
                          antialias=side < x.shape[-1])
        out[i:i + 4096] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def load(name: str, root: str | Path, download: bool, device: torch.device, mean: list[float],
         std: list[float], crop_padding: int = 0, flip: bool = False, resize: int | None = None) -> TensorData:
    """Load data set ``name`` onto ``device`` (``root``/``download`` apply to torchvision sets), resized
    once to ``resize`` x ``resize`` when given."""
    if name not in LOADERS:
        raise DataError(f"dataset.name={name!r} is not known: use one of {sorted(LOADERS)}")
    train_x, train_y, test_x, test_y = LOADERS[name](Path(root), download)
    if resize:
        train_x, test_x = resize_images(train_x, resize), resize_images(test_x, resize)
    channels = train_x.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"dataset.mean/std have {len(mean)}/{len(std)} values for {channels}-channel images")
    as_t = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
    return TensorData(
        train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device),
        as_t(mean), as_t(std), crop_padding, flip,
    )


Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _not_found(cls_name: str, root: Path, download: bool, exc: Exception) -> DataError:
    """One line naming the data set, the folder and the way out."""
    how = ("the download failed (no network?): put the files there or set dataset.root to where they are"
           if download else "set dataset.download=true, or dataset.root to the folder that holds it")
    first = (str(exc).strip().splitlines() or [""])[0]  # torchvision's MNIST error runs over several lines
    return DataError(f"{cls_name} not found in {root.resolve()}: {how} ({type(exc).__name__}: {first})")


def _torchvision(cls_name: str, root: Path, download: bool) -> tuple:
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)
    except Exception as exc:  # torchvision raises RuntimeError, or URLError/OSError when offline
        raise _not_found(cls_name, root, download, exc) from exc


def _cifar(cls_name: str) -> callable:
    def loader(root: Path, download: bool) -> Arrays:
        train, test = _torchvision(cls_name, root, download)
        to_x = lambda d: torch.from_numpy(np.ascontiguousarray(d.data)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
        to_y = lambda d: torch.as_tensor(d.targets, dtype=torch.int64)  # noqa: E731
        return to_x(train), to_y(train), to_x(test), to_y(test)
    return loader


def _mnist(root: Path, download: bool) -> Arrays:
    train, test = _torchvision("MNIST", root, download)
    return (train.data.unsqueeze(1).contiguous(), train.targets.long(),
            test.data.unsqueeze(1).contiguous(), test.targets.long())


def _mnist5k(root: Path, download: bool) -> Arrays:
    """The bundled 4,000/1,000 stratified MNIST subset (see scripts/make_mnist5k.py)."""
    blob = resources.files("flipout_repro").joinpath("assets/mnist5k.npz").read_bytes()
    with np.load(io.BytesIO(blob)) as d:
        t = {k: torch.from_numpy(d[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
    return t["x_train"].unsqueeze(1), t["y_train"], t["x_test"].unsqueeze(1), t["y_test"]


def _imagenette(side: int) -> callable:
    """Imagenette (full-size JPEGs) through torchvision, every image resized once to side x side.

    As the paper's code: RGB (grey images repeated), PIL bilinear ``Resize((side, side))`` without keeping
    the aspect ratio; the random crop with zero padding and the flip are then batched like CIFAR's.
    """
    def loader(root: Path, download: bool) -> Arrays:
        from concurrent.futures import ThreadPoolExecutor

        from PIL import Image

        def read(path: str) -> np.ndarray:  # PIL decodes and resizes outside the GIL: threads help
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB").resize((side, side), Image.BILINEAR))

        def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            ds = _torchvision_split("Imagenette", root, download, split=name, size="full", loader=read)
            if len(ds) == 0:
                raise DataError(f"Imagenette's {name} split in {root.resolve()} holds no .JPEG files")
            with ThreadPoolExecutor() as pool:
                images, labels = zip(*pool.map(ds.__getitem__, range(len(ds))))
            x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
            return x, torch.as_tensor(labels, dtype=torch.int64)

        return (*split("train"), *split("val"))
    return loader


def _torchvision_split(cls_name: str, root: Path, download: bool, **kwargs: object) -> object:
    """One split of a torchvision data set whose constructor takes ``split=`` (not ``train=``)."""
    import torchvision

    try:
        return getattr(torchvision.datasets, cls_name)(str(root), download=download, **kwargs)
    except Exception as exc:  # RuntimeError when missing, URLError/OSError when offline
        raise _not_found(cls_name, root, download, exc) from exc


LOADERS = {
    "cifar10": _cifar("CIFAR10"),
    "cifar100": _cifar("CIFAR100"),
    "mnist": _mnist,
    "mnist5k": _mnist5k,
    "imagenette": _imagenette(224),  # the paper's 224 x 224
}
