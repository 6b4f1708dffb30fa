"""``dataset.decode=device``: JPEG decoding and augmentation in the training process, on the run's device
(batched ``torchvision.io.decode_jpeg``: nvjpeg on CUDA, libjpeg-turbo on the CPU), instead of PIL in the
DataLoader workers (``dataset.decode=workers``, data/folder.py's :class:`ImageFiles`).

The workers only read each file's bytes and its JPEG header (PIL's ``Image.open`` parses the header, not
the pixels), and draw the crop box and flip bit exactly as :class:`ImageFiles` does: torchvision's
``RandomResizedCrop.get_params`` and RandomHorizontalFlip's draw under ``sample_seed(key, i)``, from the
image's size alone. So every image gets the same box and flip under both settings. The pixels differ
slightly (libjpeg-turbo/nvjpeg against PIL's decoder, torch's antialiased bilinear resize against PIL's):
a different input stream, so a non-default ``dataset.decode`` is part of the run hash.
"""
from __future__ import annotations

import io

import torch
from torch.utils.data import Dataset

from flipout_repro.data.crop_draw import draw_crop
from flipout_repro.data.errors import DataError


class ImageBytes(Dataset):
    """(file bytes as a uint8 tensor, int64 [top, left, height, width, flip, index]) of ``files``: the box and
    flip of the epoch ``key``'s per-image seeds (zeros when ``key`` is None: evaluation), and the image's index
    (to name a file that fails to decode)."""

    def __init__(self, files: list[str], size: int, eval_resize: int, flip: bool,
                 key: int | None = None) -> None:
        self.files, self.size, self.eval_resize, self.flip, self.key = files, size, eval_resize, flip, key

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image  # only a streamed set needs it (as in ImageFiles)

        path = self.files[i]
        with open(path, "rb") as f:
            raw = f.read()
        try:
            with Image.open(io.BytesIO(raw)) as im:  # the header only: format and size
                if im.format != "JPEG":
                    raise OSError(f"a {im.format} file, not a JPEG")
                params = [0, 0, 0, 0, 0, i]
                if self.key is not None:  # ImageFiles' draws, from the header's size
                    top, left, h, w, flip = draw_crop(im, self.key, i, self.flip)
                    params = [top, left, h, w, int(flip), i]
        except OSError as exc:
            raise DataError(f"{path} cannot be decoded as a JPEG on the device ({type(exc).__name__}: {exc}): "
                            "replace it, or set dataset.decode=workers (PIL reads other formats)") from exc
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8), torch.tensor(params, dtype=torch.int64)

    @staticmethod
    def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """A batch: the list of byte tensors (their lengths differ) and the (B, 6) parameters."""
        return [b for b, _ in items], torch.stack([p for _, p in items])

    def pixels(self, batch: tuple[list[torch.Tensor], torch.Tensor], device: torch.device) -> torch.Tensor:
        """uint8 (B, 3, size, size) on ``device``: decoded as RGB (grey and CMYK JPEGs converted), then
        cropped to the box, resized (bilinear, antialiased) and flipped; or, for evaluation, the shorter side
        resized to ``eval_resize`` and center-cropped."""
        from torchvision.io import ImageReadMode, decode_jpeg
        from torchvision.transforms.v2 import functional as F

        data, params = batch
        try:
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # a header that parses over corrupt data: find and name the file
            for raw, i in zip(data, params[:, 5].tolist()):
                try:
                    decode_jpeg(raw, mode=ImageReadMode.RGB)
                except RuntimeError as exc:
                    raise DataError(f"{self.files[i]} cannot be decoded as a JPEG on the device ({exc}): "
                                    "replace or remove it") from exc
            raise
        out = []
        for img, (top, left, h, w, flip, _) in zip(images, params.tolist()):
            if self.key is None:
                img = F.center_crop(F.resize(img, [self.eval_resize], antialias=True), [self.size, self.size])
            else:
                img = F.resized_crop(img, top, left, h, w, [self.size, self.size], antialias=True)
                img = F.horizontal_flip(img) if flip else img
            out.append(img)
        return torch.stack(out)
