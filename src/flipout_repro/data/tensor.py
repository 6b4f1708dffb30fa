"""Data sets held as uint8 tensors on the device, with batched per-sample augmentation.

torchvision reads the files (CIFAR pickle batches, MNIST IDX; see data/loaders.py); after that
everything is a tensor on the training device: batches are index slices, normalisation and augmentation
(random crop with zero padding, horizontal flip, each drawn per sample) are a few batched tensor ops.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F


#: a split is normalised once as a whole (float32) when it takes at most this much memory (MNIST at 32x32:
#: 245 MB for 60,000 images; CIFAR-10 trains with augmentation and is normalised per batch)
PRENORMALIZE_MAX_BYTES = 256 * 2**20


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
    #: what the crop pads with: ``zeros`` or ``reflect`` (the image mirrored at its border)
    crop_fill: str = "zeros"
    #: each training image's flip, drawn once (:meth:`alternating_flips`): image i is mirrored in epoch e
    #: when ``flip_coins[i]`` differs from ``e`` being even (airbench's alternating flip); None: a fresh draw
    flip_coins: torch.Tensor | None = None
    #: leave out each epoch's last, smaller batch
    drop_last: bool = False
    #: the images held out of training (``dataset.train_fraction`` < 1), evaluated like the test set
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    #: the normalised images of each split, made on first use by :meth:`normalized` (not a field of the
    #: data set: ``to``/``dataclasses.replace`` start a fresh cache)
    _normalized: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def in_channels(self) -> int:
        """Image channels."""
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        """Image side (images are square)."""
        return self.train_x.shape[-1]

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per epoch (the last one may be smaller, unless ``drop_last``)."""
        if self.drop_last:
            return len(self.train_y) // batch_size
        return -(-len(self.train_y) // batch_size)

    def alternating_flips(self, seed: int) -> "TensorData":
        """The same data set with each training image's flip drawn once, from a generator of its own seeded
        with ``seed`` (the run's other draws are not moved), then alternated every epoch."""
        gen = torch.Generator(device=self.train_y.device)
        gen.manual_seed(seed)
        coins = torch.rand(len(self.train_y), device=self.train_y.device, generator=gen) < 0.5
        return dataclasses.replace(self, flip_coins=coins)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float32, normalised per channel."""
        return (x.float().div_(255.0) - self.mean) / self.std

    def normalized(self, split: str) -> torch.Tensor | None:
        """All of ``split``'s images ("train", "test", "val") normalised once, or None where that is not
        done: training images that are augmented per batch (the crop pads with zeros before normalising),
        or a split over :data:`PRENORMALIZE_MAX_BYTES` as float32. Normalisation is element-wise, so a
        batch gathered from these is bit for bit ``normalize`` of the gathered uint8 images
        (tests/data/test_prenormalized.py); it only saves the per-batch conversion."""
        if split not in self._normalized:
            x = {"train": self.train_x, "test": self.test_x, "val": self.val_x}[split]
            augmented = split == "train" and bool(self.crop_padding or self.flip or self.crop_fill != "zeros")
            small = x is not None and x.numel() * 4 <= PRENORMALIZE_MAX_BYTES
            self._normalized[split] = self.normalize(x) if small and not augmented else None
        return self._normalized[split]

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        """A fresh permutation of the training set (one per epoch)."""
        return torch.randperm(len(self.train_y), device=self.train_y.device, generator=generator)

    def train_batches(self, batch_size: int, generator: torch.Generator, order: torch.Tensor | None = None,
                      start: int = 0, epoch: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled, augmented, normalised training batches in ``order`` (a new one if None), from
        batch number ``start`` on, of epoch ``epoch`` (from 1: which images an alternating flip mirrors).
        Lazy: a batch's augmentation is drawn only when it is requested."""
        n = self.steps_per_epoch(batch_size) * batch_size if self.drop_last else len(self.train_y)
        if order is None:
            order = self.epoch_order(generator)
        ready = self.normalized("train")
        for begin in range(start * batch_size, n, batch_size):
            idx = order[begin:begin + batch_size]
            if ready is not None:
                yield ready[idx], self.train_y[idx]
                continue
            x = self.train_x[idx]
            flip: bool | torch.Tensor = self.flip
            if self.flip and self.flip_coins is not None:
                flip = self.flip_coins[idx] ^ (epoch % 2 == 0)
            if self.crop_fill == "reflect":  # padded by reflection: done on the normalised pixels
                yield random_crop_flip(self.normalize(x), self.crop_padding, flip, generator, "reflect"), \
                    self.train_y[idx]
                continue
            if self.crop_padding or self.flip:
                x = random_crop_flip(x, self.crop_padding, flip, generator)
            yield self.normalize(x), self.train_y[idx]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test set in order, normalised, without augmentation."""
        return self._plain_batches(self.test_x, self.test_y, batch_size, self.normalized("test"))

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The held-out part of the training set in order, normalised, without augmentation."""
        if self.val_y is None:
            raise ValueError("this data set holds nothing out: set dataset.train_fraction below 1")
        return self._plain_batches(self.val_x, self.val_y, batch_size, self.normalized("val"))

    def _plain_batches(self, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                       ready: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(y), batch_size):
            if ready is not None:
                yield ready[start:start + batch_size], y[start:start + batch_size]
            else:
                yield self.normalize(x[start:start + batch_size]), y[start:start + batch_size]

    def eval_train_batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """Training images ``indices``, normalised, without augmentation (int8 calibration)."""
        for start in range(0, len(indices), batch_size):
            yield self.normalize(self.train_x[indices[start:start + batch_size].to(self.train_x.device)])

    def to(self, device: torch.device) -> "TensorData":
        """The same data set on ``device`` (itself when it is there already)."""
        if self.train_y.device == torch.device(device):
            return self
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return dataclasses.replace(self, **{k: v.to(device) for k, v in moved.items()
                                            if isinstance(v, torch.Tensor)})


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool | torch.Tensor, generator: torch.Generator,
                     fill: str = "zeros") -> torch.Tensor:
    """Per-sample random crop of a padded batch and per-sample horizontal flip, in one gather.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` applied to
    every image independently (zero fill before normalisation, as in the paper's pipeline). ``fill="reflect"``
    pads with the image mirrored at its border (airbench's ``F.pad(..., 'reflect')``; float images).
    ``flip`` may be a boolean per image (which to mirror) instead of a fresh draw.
    """
    n, c, h, w = x.shape
    dev = x.device
    if padding:
        x = F.pad(x, (padding, padding, padding, padding), mode="reflect" if fill == "reflect" else "constant")
    top = torch.randint(0, 2 * padding + 1, (n, 1), device=dev, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=dev, generator=generator)
    rows = top + torch.arange(h, device=dev)
    cols = left + torch.arange(w, device=dev)
    if isinstance(flip, torch.Tensor):
        cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    elif flip:
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


