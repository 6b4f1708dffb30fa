"""Readers of the files of the in-memory data sets: each returns uint8 (N, C, H, W) train and test images
and int64 labels on CPU. torchvision reads CIFAR (pickle batches), MNIST (IDX) and Imagenette; the bundled
``mnist5k`` subset ships inside the package, so it needs neither torchvision's files nor a network;
Tiny-ImageNet is read from its own folder layout.
"""
from __future__ import annotations

import contextlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from flipout_repro.data.errors import DataError

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _not_found(cls_name: str, root: Path, download: bool, exc: Exception) -> DataError:
    """One line naming the data set, the folder and the way out."""
    how = ("the download failed (no network?): put the files there or set dataset.root to where they are"
           if download else "set dataset.download=true, or dataset.root to the folder that holds it")
    first = (str(exc).strip().splitlines() or [""])[0]  # torchvision's MNIST error runs over several lines
    return DataError(f"{cls_name} not found in {root.resolve()}: {how} ({type(exc).__name__}: {first})")


@contextlib.contextmanager
def _no_empty_folders_left(root: Path) -> Iterator[None]:
    """A failed read or download leaves no folder it created that holds nothing (torchvision makes
    ``root`` and e.g. ``root/MNIST/raw`` before it downloads): they are removed, bottom-up. Folders that
    were there before, and any that hold a file, stay."""
    existed = root.is_dir()
    before = set(os.listdir(root)) if existed else set()
    created = root.absolute()  # the highest folder of root's path that does not exist yet
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    try:
        yield
    except BaseException:
        new = [root / n for n in os.listdir(root) if n not in before] if root.is_dir() else []
        for top in [p for p in new if p.is_dir() and not p.is_symlink()] + ([] if existed else [created]):
            for folder, _, _ in sorted(os.walk(top), key=lambda w: -len(Path(w[0]).parts)):
                with contextlib.suppress(OSError):  # not empty: a file (e.g. a partial download) stays
                    os.rmdir(folder)
        raise


def _torchvision(cls_name: str, root: Path, download: bool) -> tuple:
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        with _no_empty_folders_left(root):
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
        with _no_empty_folders_left(root):
            return getattr(torchvision.datasets, cls_name)(str(root), download=download, **kwargs)
    except Exception as exc:  # RuntimeError when missing, URLError/OSError when offline
        raise _not_found(cls_name, root, download, exc) from exc


TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def _tiny_imagenet(root: Path, download: bool) -> Arrays:
    """Tiny-ImageNet-200 (64x64 RGB, 200 classes) from ``<root>/tiny-imagenet-200`` (or ``<root>`` itself).

    Its own layout: ``train/<wnid>/images/*.JPEG``, and ``val/images/*.JPEG`` with the labels in
    ``val/val_annotations.txt`` (a ``val/<wnid>/`` layout is read too). Labels are the sorted wnids, as
    torchvision's ImageFolder numbers them (FORCE reads both splits with ImageFolder,
    naver/force experiments/datasets.py:208-211, which needs the validation images sorted into class
    folders first). Grey images become RGB (ImageFolder's loader converts too). The validation split
    is the test set, as in FORCE (datasets.py:210).
    """
    base = root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root
    train_dir, val_dir = base / "train", base / "val"
    fix = f"unzip {TINY_URL} there, or set dataset.root to the folder that holds tiny-imagenet-200/"
    if download:
        raise DataError(f"dataset.download=true cannot fetch Tiny-ImageNet: set dataset.download=false; {fix}")
    if not train_dir.is_dir() or not val_dir.is_dir():
        raise DataError(f"Tiny-ImageNet not found: {base.resolve()} has no train/ and val/ folders: {fix}")
    wnids = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    label = {w: i for i, w in enumerate(wnids)}
    train = [(p, label[w]) for w in wnids for p in sorted((train_dir / w).rglob("*")) if _is_jpeg(p)]
    annotations = val_dir / "val_annotations.txt"
    if annotations.exists():
        rows = [line.split("\t") for line in annotations.read_text().splitlines() if line.strip()]
        val = [(val_dir / "images" / r[0], label.get(r[1], -1)) for r in rows]
    else:
        val = [(p, label.get(d.name, -1)) for d in sorted(val_dir.iterdir()) if d.is_dir()
               for p in sorted(d.rglob("*")) if _is_jpeg(p)]
    unknown = [str(p) for p, y in val if y < 0]
    if unknown:
        raise DataError(f"Tiny-ImageNet: {unknown[0]} (and {len(unknown) - 1} more) belong to no class folder of "
                        f"{train_dir}: the train/ and val/ folders do not match")
    if not train or not val:
        raise DataError(f"Tiny-ImageNet: no .JPEG files in {train_dir if not train else val_dir}: {fix}")
    return (*_read_rgb(train, 64), *_read_rgb(val, 64))


def _is_jpeg(path: Path) -> bool:
    return path.suffix.lower() in (".jpeg", ".jpg") and path.is_file()


def _read_rgb(items: list[tuple[Path, int]], side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, side, side) images and int64 labels; a file of another size is an error."""
    from PIL import Image

    def read(path: Path) -> np.ndarray:  # PIL decodes outside the GIL: threads help
        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("RGB"))
        except OSError as exc:  # missing or not an image
            raise DataError(f"{path} cannot be read as an image ({type(exc).__name__}): is the folder"
                            " complete?") from exc
        if a.shape != (side, side, 3):
            raise DataError(f"{path} is {a.shape[1]}x{a.shape[0]}, not {side}x{side}: is this Tiny-ImageNet?")
        return a

    with ThreadPoolExecutor() as pool:
        images = list(pool.map(read, [p for p, _ in items]))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor([y for _, y in items], dtype=torch.int64)


LOADERS = {
    "cifar10": _cifar("CIFAR10"),
    "cifar100": _cifar("CIFAR100"),
    "mnist": _mnist,
    "mnist5k": _mnist5k,
    "imagenette": _imagenette(224),  # the paper's 224 x 224
    "tiny_imagenet": _tiny_imagenet,
}
