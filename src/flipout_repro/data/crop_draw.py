"""The per-image augmentation draw of the streamed sets, shared by both ``dataset.decode`` settings (the
workers' PIL path, data/folder.py, and the device path, data/jpeg_device.py), so both give an image the same
crop box and flip: torchvision's ``RandomResizedCrop.get_params`` then RandomHorizontalFlip's draw, under
torch's RNG seeded with :func:`sample_seed` of (epoch key, image index). Only the image's size is read."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: RandomResizedCrop's defaults, which pytorch/examples imagenet/main.py:247 (77f55b9) uses
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def sample_seed(key: int, index: int) -> int:
    """The seed of image ``index``'s augmentation in the epoch of ``key`` (a hash of both, 63 bits)."""
    return int(np.random.SeedSequence([key, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def draw_crop(img: Any, key: int, index: int, flip: bool) -> tuple[int, int, int, int, bool]:
    """(top, left, height, width, flip) of image ``index`` (a PIL image; only its size is used) in the
    epoch of ``key``; the process's own RNG stream is left alone (workers=0 runs in the training process)."""
    import torchvision.transforms as T  # only a streamed set needs torchvision (a second per import)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sample_seed(key, index))
        top, left, h, w = T.RandomResizedCrop.get_params(img, list(SCALE), list(RATIO))
        flipped = flip and bool(torch.rand(1) < 0.5)  # RandomHorizontalFlip's draw
    return top, left, h, w, flipped
