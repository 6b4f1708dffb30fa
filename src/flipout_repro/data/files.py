"""What every file-based data set shares: one class index for both splits, one image read as RGB with the
file named when it cannot be, ``dataset.verify``'s read of every file before a run starts, and the image
sizes that cannot be allocated named by their key.

Labels are numbered from the training split's class folders (sorted, as torchvision's ImageFolder numbers
them); the validation split must hold the same classes: a class folder on one side only would shift or
orphan labels (a test set scored against the wrong classes), so it is refused with every folder named.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from flipout_repro.data.errors import DataError
from flipout_repro.errors import ConfigError

#: how many file names a message lists before it counts the rest
LISTED = 10


def listing(items: Iterable[object], limit: int = LISTED) -> str:
    """``a, b, c`` or ``a, b, c and 7 more``."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def class_index(name: str, train_dir: Path, train_classes: Iterable[str], val_dir: Path,
                val_classes: Iterable[str]) -> dict[str, int]:
    """{class: label} from the training split's classes (sorted), or a DataError naming the class folders
    that the validation split lacks and those it has beyond the training split's."""
    train, val = set(train_classes), set(val_classes)
    missing, extra = sorted(train - val), sorted(val - train)
    if missing or extra:
        parts = ([f"{val_dir} lacks {len(missing)} class(es) of {train_dir}: {listing(missing)}"] if missing else []) \
            + ([f"{val_dir} has {len(extra)} class(es) that {train_dir} lacks: {listing(extra)}"] if extra else [])
        raise DataError(f"{name}: {'; '.join(parts)}: labels are numbered from the training split's classes, so"
                        " both splits need the same class folders")
    return {c: i for i, c in enumerate(sorted(train))}


def open_rgb(path: str | Path) -> "PIL.Image.Image":  # noqa: F821 - PIL is imported where a set needs it
    """The image at ``path`` decoded whole and converted to RGB (grey and CMYK JPEGs exist in ImageNet), or a
    DataError naming the file (missing, truncated, not an image)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # decodes every pixel: a truncated file fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:  # truncated, not an image
        raise DataError(f"{path} cannot be read as an image ({type(exc).__name__}: {exc}): replace or remove it")\
            from exc


def check_files(name: str, files: list[str], read: Callable[[str], object] = open_rgb, workers: int = 0) -> None:
    """``dataset.verify``: read every one of ``files`` once with ``read`` (``workers`` threads; 0: one a CPU)
    and raise one DataError that names every file that cannot be read."""
    def bad(path: str) -> str | None:
        try:
            read(path)
        except DataError:
            return path
        return None

    with ThreadPoolExecutor(max_workers=workers or None) as pool:
        failed = [p for p in pool.map(bad, files) if p is not None]
    if failed:
        raise DataError(f"{name}: {len(failed)} of {len(files)} files cannot be read as images: "
                        f"{listing(failed, len(failed))}: replace or remove them")


@contextlib.contextmanager
def allocating(key: str, value: object, what: str, nbytes: int) -> Iterator[None]:
    """A failed allocation inside (``nbytes`` for ``what``) becomes a ConfigError naming ``key``, the image size
    that asked for it."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:  # torch: "can't allocate memory"; CUDA: OutOfMemoryError
        if not isinstance(exc, MemoryError) and "alloc" not in str(exc).lower():
            raise
        raise ConfigError(key, value, f"needs {nbytes / 2 ** 30:,.1f} GiB for {what}, which cannot be allocated",
                          "give the side the model is meant to see, e.g. 32 for CIFAR-sized or 224 for"
                          " ImageNet-sized images") from None


def probe_image(key: str, side: int) -> None:
    """A ConfigError naming ``key`` when one float32 RGB image of ``side`` x ``side`` cannot be allocated."""
    nbytes = 3 * side * side * 4
    with allocating(key, side, f"one {side}x{side} image", nbytes):
        torch.empty(nbytes, dtype=torch.uint8)
