"""The rules of ``dataset.*``, in one place: config validation checks a run's whole ``dataset`` node with
:func:`check_config` before anything is written, and :func:`data.load` checks the choice of source with
:func:`check_source` (the same rule) before it reads a file. Labels against ``num_classes`` and the files'
channels against ``mean``/``std`` are checked once the files are read (data/__init__.py, training.build).
"""
from __future__ import annotations

from omegaconf import DictConfig

from flipout_repro.data.folder import STREAMING
from flipout_repro.data.loaders import LOADERS
from flipout_repro.errors import ConfigError, check_finite, number


def check_source(name: str, download: bool, eval_resize: int | None, image_size: int | None,
                 decode: str) -> None:
    """A known data set, and the keys that apply to it: a streamed set (:data:`STREAMING`) is read from
    files (no download) and needs ``eval_resize`` and ``image_size``; an in-memory set takes neither
    ``eval_resize`` nor ``decode=device``."""
    known = sorted([*LOADERS, *STREAMING])
    if name not in known:
        raise ConfigError("dataset.name", name, "is not a data set", f"use one of {', '.join(known)}")
    if name in STREAMING:
        if download:
            raise ConfigError("dataset.download", download, f"cannot fetch {name}",
                              "set dataset.download=false and dataset.root to the folder that holds it")
        if eval_resize is None or image_size is None:
            raise ConfigError("dataset.eval_resize", eval_resize, f"must be set for dataset={name}, which is"
                              " streamed from files", "set dataset.image_size (the crop, e.g. 224) and"
                              " dataset.eval_resize (the side resized to before the evaluation crop, e.g. 256)")
        return
    if decode != "workers":
        raise ConfigError("dataset.decode", decode, f"applies to streamed sets only (dataset={', '.join(STREAMING)})",
                          "set dataset.decode=workers")
    if eval_resize is not None:
        raise ConfigError("dataset.eval_resize", eval_resize, f"applies to streamed sets only"
                          f" (dataset={', '.join(STREAMING)}), not {name}", "set it to null")


def check_config(cfg: DictConfig) -> None:
    """Every value of a run config's ``dataset`` node, and :func:`check_source`."""
    ds = cfg.dataset
    number(cfg, "dataset.in_channels", int, 1, None, fix="e.g. dataset.in_channels=3")
    number(cfg, "dataset.image_size", int, 1, None, fix="the side the model sees, e.g. dataset.image_size=32")
    number(cfg, "dataset.num_classes", int, 1, None, fix="e.g. dataset.num_classes=10")
    number(cfg, "dataset.crop_padding", int, 0, None, fix="pixels of zero padding, e.g. 4, or 0 for no crop")
    for key in ("mean", "std"):
        values = list(ds[key])
        check_finite(f"dataset.{key}", values, f"one value a channel, e.g. dataset.{key}=[0.5]")
        if len(values) != ds.in_channels:
            raise ConfigError(f"dataset.{key}", values, f"has {len(values)} values for {ds.in_channels} channels"
                              " (dataset.in_channels)", "give one value a channel")
    if any(v <= 0 for v in ds.std):
        raise ConfigError("dataset.std", list(ds.std), "must be positive", "one value a channel, e.g. [0.3081]")
    if ds.resize is not None:
        number(cfg, "dataset.resize", int, 1, None, fix="give the side in pixels, e.g. dataset.resize=32, or null")
        if ds.resize != ds.image_size:
            raise ConfigError("dataset.resize", ds.resize, f"differs from dataset.image_size={ds.image_size}",
                              f"set dataset.image_size={ds.resize} too (the side the model sees)")
    number(cfg, "dataset.train_fraction", float, 0, 1, lo_open=True, hi_open=False,
           fix="the fraction of the training set to train on, e.g. 0.9 (FORCE's), or 1.0 for all of it")
    if ds.workers is not None:
        number(cfg, "dataset.workers", int, 0, None, fix="e.g. dataset.workers=8 (0: decode in this process), or null")
    check_source(ds.name, ds.download, ds.eval_resize, ds.image_size, ds.decode)
    if ds.flip_alternate and not ds.flip:
        raise ConfigError("dataset.flip_alternate", True, "alternates the flip, and dataset.flip is false",
                          "set dataset.flip=true, or dataset.flip_alternate=false")
    if ds.crop_fill != "zeros" and not ds.crop_padding:
        raise ConfigError("dataset.crop_fill", ds.crop_fill, "fills the crop's padding, and dataset.crop_padding"
                          " is 0", "set dataset.crop_padding (e.g. 2, airbench's), or dataset.crop_fill=zeros")
    if ds.eval_resize is None:  # an in-memory set
        return
    for key, value in (("crop_fill", "zeros"), ("flip_alternate", False), ("drop_last", False)):
        if ds[key] != value:
            raise ConfigError(f"dataset.{key}", ds[key], f"applies to in-memory sets only, not to {ds.name}"
                              " (streamed from files)", f"set dataset.{key}={str(value).lower()}")
    number(cfg, "dataset.eval_resize", int, ds.image_size, None,
           fix=f"the shorter side before the center crop of {ds.image_size}, e.g. 256 for 224")
    for key, value in (("crop_padding", 0), ("resize", None)):
        if ds[key] != value:  # a streamed set: RandomResizedCrop crops and resizes
            raise ConfigError(f"dataset.{key}", ds[key], "does not apply with dataset.eval_resize="
                              f"{ds.eval_resize} (a streamed set: RandomResizedCrop crops and resizes each image)",
                              f"set dataset.{key}={'null' if value is None else 0}")
