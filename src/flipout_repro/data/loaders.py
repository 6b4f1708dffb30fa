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
from flipout_repro.data.files import class_index, listing, open_rgb

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


#: Imagenette's ten classes (ImageNet wnids), whose sorted order numbers the labels
IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
                    "n03425413", "n03445777", "n03888257")


def _imagenette(side: int) -> callable:
    """Imagenette (full-size JPEGs) from ``<root>/imagenette2/{train,val}/<wnid>/*.JPEG`` (torchvision downloads
    it when ``download`` and the folder is absent), every image resized once to side x side.

    As the paper's code: RGB (grey images repeated), PIL bilinear ``Resize((side, side))`` without keeping
    the aspect ratio; the random crop with zero padding and the flip are then batched like CIFAR's. Labels
    are the training split's wnids, sorted (torchvision's numbering); a class folder that is not one of
    Imagenette's, or that only one split has, is refused by name.
    """
    def loader(root: Path, download: bool) -> Arrays:
        from PIL import Image
        from torchvision.datasets.folder import make_dataset

        base = root / "imagenette2"
        if download or not base.is_dir():  # fetches it, or names the folder and the way out
            _torchvision_split("Imagenette", root, download, split="train", size="full")
        dirs = {name: base / name for name in ("train", "val")}
        classes = {name: _imagenette_classes(d) for name, d in dirs.items()}
        index = class_index("Imagenette", dirs["train"], classes["train"], dirs["val"], classes["val"])

        def read(path: str) -> np.ndarray:  # PIL decodes and resizes outside the GIL: threads help
            return np.asarray(open_rgb(path).resize((side, side), Image.BILINEAR))

        def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            items = make_dataset(str(dirs[name]), index, extensions=".jpeg", allow_empty=True)
            empty = sorted(set(index) - {Path(p).relative_to(dirs[name]).parts[0] for p, _ in items})
            if empty:
                raise DataError(f"Imagenette: class folder(s) {listing(empty)} of {dirs[name]} hold no .JPEG files:"
                                " is the folder complete?")
            with ThreadPoolExecutor() as pool:
                images = list(pool.map(read, [p for p, _ in items]))
            x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
            return x, torch.as_tensor([y for _, y in items], dtype=torch.int64)

        return (*split("train"), *split("val"))
    return loader


def _imagenette_classes(folder: Path) -> list[str]:
    """The class folders of one Imagenette split, each one of :data:`IMAGENETTE_WNIDS`."""
    if not folder.is_dir():
        raise DataError(f"Imagenette: {folder.resolve()} is not a folder: set dataset.root to the folder that holds"
                        " imagenette2/train/ and imagenette2/val/, or dataset.download=true")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"Imagenette: {folder.resolve()} holds no class folders: is the folder complete?")
    unknown = [c for c in classes if c not in IMAGENETTE_WNIDS]
    if unknown:
        raise DataError(f"Imagenette: {folder} holds class folder(s) that are not Imagenette's: {listing(unknown)}:"
                        f" remove them (its classes are {', '.join(IMAGENETTE_WNIDS)})")
    return classes


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
    annotations = val_dir / "val_annotations.txt"
    if annotations.exists():
        val_where, rows = annotations, _annotations(annotations)
        val_files = [(val_dir / "images" / f, w) for f, w in rows]
    else:
        val_where = val_dir
        val_files = [(p, d.name) for d in sorted(val_dir.iterdir()) if d.is_dir() for p in sorted(d.rglob("*"))
                     if _is_jpeg(p)]
        val_classes = [d.name for d in val_dir.iterdir() if d.is_dir()]
    label = class_index("Tiny-ImageNet", train_dir, wnids, val_where,
                        {w for _, w in val_files} if annotations.exists() else val_classes)
    train = [(p, label[w]) for w in wnids for p in sorted((train_dir / w).rglob("*")) if _is_jpeg(p)]
    val = [(p, label[w]) for p, w in val_files]
    if not train or not val:
        raise DataError(f"Tiny-ImageNet: no .JPEG files in {train_dir if not train else val_dir}: {fix}")
    return (*_read_rgb(train, 64), *_read_rgb(val, 64))


def _annotations(path: Path) -> list[tuple[str, str]]:
    """(file name, wnid) of each line of Tiny-ImageNet's ``val_annotations.txt`` (``<file>\t<wnid>\t<box>``),
    or a DataError naming the file and the first line that is not of that form."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Tiny-ImageNet: {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip() or "/" in fields[0]:
            raise DataError(f"Tiny-ImageNet: {path} line {number} is {line[:80]!r}, not '<file>\\t<wnid>\\t...':"
                            " fix or remove that line (or unzip the archive again)")
        rows.append((fields[0].strip(), fields[1].strip()))
    return rows


def _is_jpeg(path: Path) -> bool:
    return path.suffix.lower() in (".jpeg", ".jpg") and path.is_file()


def _read_rgb(items: list[tuple[Path, int]], side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, side, side) images and int64 labels; a file of another size is an error."""
    def read(path: Path) -> np.ndarray:  # PIL decodes outside the GIL: threads help
        a = np.asarray(open_rgb(path))  # a missing or broken file: DataError naming it
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
