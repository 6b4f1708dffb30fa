"""The real loaders on tiny files written in the real CIFAR (pickle batches) and MNIST (IDX) formats,
read through torchvision with download=False; batched augmentation; the bundled subset."""
import pickle
import struct

import numpy as np
import pytest
import torch

from flipout_repro import data as data_mod
from helpers import write_cifar10
from flipout_repro.data import DataError
from flipout_repro.data.tensor import random_crop_flip


def test_cifar10_pickle_batches_load_as_nchw_uint8(tmp_path, no_md5):
    batches = write_cifar10(tmp_path)
    d = data_mod.load("cifar10", tmp_path, False, torch.device("cpu"), [0.5] * 3, [0.25] * 3, 4, True)
    assert d.train_x.shape == (30, 3, 32, 32) and d.train_x.dtype == torch.uint8
    assert d.test_x.shape == (6, 3, 32, 32)
    x0, y0 = batches["data_batch_1"]
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, row-major
    assert torch.equal(d.train_x[0], torch.from_numpy(x0[0].reshape(3, 32, 32)))
    assert d.train_y[:6].tolist() == y0
    xt, yt = batches["test_batch"]
    assert d.test_y.tolist() == yt
    x, _ = next(d.test_batches(2))
    expected = (torch.from_numpy(xt[0].reshape(3, 32, 32)).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x[0], expected)


def test_cifar100_fine_labels(tmp_path, no_md5):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 5), ("test", 3)):
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": [99, 0, 42, 7, 1][:n], "coarse_labels": [0] * n}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)
    d = data_mod.load("cifar100", tmp_path, False, torch.device("cpu"), [0.5] * 3, [0.5] * 3)
    assert d.train_y.tolist() == [99, 0, 42, 7, 1] and d.test_x.shape == (3, 3, 32, 32)


def write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.tobytes())


def test_mnist_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    xtr, ytr = rng.integers(0, 256, (7, 28, 28)), [3, 1, 4, 1, 5, 9, 2]
    xte, yte = rng.integers(0, 256, (2, 28, 28)), [6, 5]
    write_idx(raw / "train-images-idx3-ubyte", xtr)
    write_idx(raw / "train-labels-idx1-ubyte", ytr)
    write_idx(raw / "t10k-images-idx3-ubyte", xte)
    write_idx(raw / "t10k-labels-idx1-ubyte", yte)
    d = data_mod.load("mnist", tmp_path, False, torch.device("cpu"), [0.5], [0.5])
    assert d.train_x.shape == (7, 1, 28, 28) and d.train_y.tolist() == ytr and d.test_y.tolist() == yte
    assert torch.equal(d.train_x[2, 0], torch.from_numpy(xtr[2].astype(np.uint8)))


def test_missing_dataset_names_the_folder_and_the_flag(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR10 not found in .*: set dataset.download=true"):
        data_mod.load("cifar10", tmp_path / "nothing", False, torch.device("cpu"), [0.5] * 3, [0.5] * 3)


def test_bundled_subset_is_a_stratified_4000_1000_split():
    d = data_mod.load("mnist5k", "unused", False, torch.device("cpu"), [0.5], [0.5])
    assert d.train_x.shape == (4000, 1, 28, 28) and d.test_x.shape == (1000, 1, 28, 28)
    assert torch.bincount(d.train_y).tolist() == [400] * 10
    assert torch.bincount(d.test_y).tolist() == [100] * 10
    assert d.train_x.dtype == torch.uint8 and int(d.train_x.max()) == 255
    assert d.steps_per_epoch(128) == 32


def test_crop_and_flip_match_a_per_sample_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=g)
    out = random_crop_flip(x, padding=2, flip=True, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    seen_offsets, flips = set(), 0
    for i in range(64):
        match = [(t, l, f) for t in range(5) for l in range(5) for f in (False, True)
                 if torch.equal(out[i], (lambda c: c.flip(-1) if f else c)(padded[i, :, t:t + 8, l:l + 8]))]
        assert match, f"sample {i} is not a crop (+flip) of its padded image"
        seen_offsets.add(match[0][:2])
        flips += match[0][2]
    assert len(seen_offsets) > 10 and 15 < flips < 49  # offsets and flips are drawn per sample


def test_training_batches_cover_the_epoch_once():
    d = data_mod.load("mnist5k", "unused", False, torch.device("cpu"), [0.5], [0.5])
    ys = torch.cat([y for _, y in d.train_batches(1000, torch.Generator().manual_seed(0))])
    assert len(ys) == 4000 and torch.bincount(ys).tolist() == [400] * 10
