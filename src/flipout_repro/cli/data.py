"""Console entry point ``flipout-data``: fetch a data set before training, on a machine with a network
(compute nodes of a cluster are often offline), and check that a folder holds a data set the training
reads.

    flipout-data download DATASET --root PATH   # torchvision's downloader; the others: where to get them
    flipout-data check DATASET --root PATH      # read it as flipout-train would (data.load), say what it holds

Every file goes under ``--root``. ``check`` reads the folder with the training's own loaders and
``dataset.download=false``: what passes here, ``flipout-train dataset=DATASET dataset.root=PATH
dataset.download=false`` reads.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from flipout_repro.cli.failures import BAD_INPUT, fail, guard

#: the data sets torchvision downloads: name -> (torchvision class, how each split is asked for)
DOWNLOADS = {
    "cifar10": ("CIFAR10", ({"train": True}, {"train": False})),
    "cifar100": ("CIFAR100", ({"train": True}, {"train": False})),
    "mnist": ("MNIST", ({"train": True}, {"train": False})),
    "imagenette": ("Imagenette", ({"split": "train", "size": "full"}, {"split": "val", "size": "full"})),
}
#: where to get the others, and the layout the training reads
BY_HAND = {
    "mnist5k": "ships inside the package: nothing to download (dataset=mnist5k reads it offline)",
    "tiny_imagenet": ("download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into PATH, which then"
                      " holds tiny-imagenet-200/train/<wnid>/images/*.JPEG and tiny-imagenet-200/val/images/*.JPEG"
                      " with val/val_annotations.txt"),
    "imagenet": ("ImageNet is not public: get ILSVRC2012 from https://image-net.org (after registering) and sort it"
                 " into torchvision's ImageFolder layout, PATH/train/<wnid>/*.JPEG and PATH/val/<wnid>/*.JPEG (the"
                 " validation images in class folders too)"),
}


def main(argv: list[str] | None = None) -> None:
    """flipout-data download|check DATASET --root PATH."""
    names = sorted([*DOWNLOADS, *BY_HAND])
    p = argparse.ArgumentParser(prog="flipout-data", description="Fetch a data set ahead of training (compute"
                                " nodes are often offline) and check that a folder holds one the training reads.")
    sub = p.add_subparsers(dest="action", required=True, metavar="{download,check}")
    for action, about in (("download", "fetch DATASET into --root with torchvision's downloader (cifar10, cifar100,"
                                       " mnist, imagenette), then check it; for the others, say where to get them"
                                       " and the folder layout expected"),
                          ("check", "read DATASET from --root as flipout-train does (no download) and say what it"
                                    " holds")):
        s = sub.add_parser(action, description=about, help=about)
        s.add_argument("dataset", choices=names, metavar="DATASET", help=f"one of {', '.join(names)}")
        s.add_argument("--root", required=True, metavar="PATH", help="the folder of the data set: dataset.root"
                       " (give flipout-train the absolute path this prints)")
    a = p.parse_args(argv)
    root = Path(a.root).expanduser().absolute()
    if a.action == "download":
        download(a.dataset, root)
    print(guard("flipout-data", lambda: check(a.dataset, root)))


def download(name: str, root: Path) -> None:
    """Fetch ``name`` into ``root`` with torchvision (its files only go there), or fail with where to get it."""
    if name not in DOWNLOADS:
        fail("flipout-data", f"{name} cannot be downloaded by this command: {BY_HAND[name].replace('PATH', str(root))}",
             BAD_INPUT)
    if root.exists() and not root.is_dir():
        fail("flipout-data", f"--root={root} is a file: give a folder", BAD_INPUT)
    import torchvision

    cls_name, splits = DOWNLOADS[name]
    cls = getattr(torchvision.datasets, cls_name)
    root.mkdir(parents=True, exist_ok=True)
    for split in splits:
        guard("flipout-data", lambda: _fetch(cls, root, split))
    print(f"{name}: downloaded into {root}")


def _fetch(cls: type, root: Path, split: dict) -> None:
    try:
        cls(str(root), download=False, **split)  # already there (torchvision's Imagenette refuses to fetch twice)
        return
    except RuntimeError:
        pass
    try:
        cls(str(root), download=True, **split)
    except OSError as exc:  # URLError and socket errors: no network here
        raise ValueError(f"{cls.__name__} could not be downloaded into {root} ({type(exc).__name__}: {exc}): run"
                         " flipout-data download on a machine with a network, then copy the folder") from exc


def check(name: str, root: Path) -> str:
    """Read ``name`` from ``root`` with the training's loader (data.load, no download); one line saying what
    it holds and the overrides that train on it, or a DataError naming what is wrong."""
    import torch

    from flipout_repro import data
    from flipout_repro.config.defaults import group_defaults

    if name == "mnist5k":
        return f"mnist5k: {BY_HAND['mnist5k']}"
    if not root.is_dir():
        raise data.DataError(f"{name}: --root={root} is not a folder: flipout-data download {name} --root {root}"
                             + ("" if name in DOWNLOADS else f", or {BY_HAND[name].replace('PATH', str(root))}"))
    d = group_defaults("dataset", name)
    loaded = data.load(name, root, False, torch.device("cpu"), list(d["mean"]), list(d["std"]), int(d["crop_padding"]),
                       bool(d["flip"]), d.get("resize"), image_size=d.get("image_size"),
                       eval_resize=d.get("eval_resize"), workers=0)
    if name in data.STREAMING:  # one class a folder
        classes, shape, labels = len(loaded.classes), "JPEG files", f"{len(loaded.classes)} class folders"
    else:  # labels 0 .. classes - 1
        classes = int(max(loaded.train_y.max(), loaded.test_y.max())) + 1
        shape, labels = f"{loaded.in_channels}x{loaded.image_size}x{loaded.image_size}", f"labels 0 to {classes - 1}"
    line = (f"{name} in {root}: {len(loaded.train_y):,} training and {len(loaded.test_y):,} test images ({shape}),"
            f" {labels}: readable; train on it with dataset={name} dataset.root={root} dataset.download=false")
    if (classes > d["num_classes"]) if name not in data.STREAMING else (classes != d["num_classes"]):
        line += (f" dataset.num_classes={classes} (conf/dataset/{name}.yaml says {d['num_classes']}, which"
                 " flipout-train would refuse for these labels)")
    return line


if __name__ == "__main__":
    main()
