"""A fixed hold-out of the training set (``dataset.train_fraction``), as FORCE's CIFAR protocol makes it.

FORCE (de Jorge et al. 2021; github:naver/force at 7494eed, experiments/datasets.py:104-114) lists the
training indices 0..N-1, shuffles them with numpy's global generator seeded 1 (experiments.py:57 and
:180 pass ``random_seed=1`` whatever the run's seed), holds out the first ``floor(valid_size * N)`` and
trains on the rest, with ``valid_size = 1 - frac_data_for_train`` (experiments.py:58, :181; the
fraction 0.9 is train_cifar_tiny_imagenet.py:68). The same numbers come out here, without touching
numpy's global generator: the split is the same for every run seed and every method.
"""
from __future__ import annotations

import math

import numpy as np

from flipout_repro.data.errors import DataError

#: numpy seed of the shuffle (FORCE's ``random_seed=1``), independent of the run's seed
SPLIT_SEED = 1


def holdout_split(n: int, train_fraction: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(training indices, held-out indices) of an ``n``-image training set, or None for
    ``train_fraction=1`` (no hold-out: nothing changes).

    Held out: ``floor((1 - train_fraction) * n)`` images, computed in floating point as the reference
    does (0.9 of CIFAR's 50,000 holds out 4,999, since 1 - 0.9 = 0.09999999999999998). The training
    indices keep the shuffled order; FORCE's ``SubsetRandomSampler`` draws a fresh permutation of that
    list each epoch, as our ``epoch_order`` does of the kept images.
    """
    if train_fraction >= 1:
        return None
    held = math.floor((1 - train_fraction) * n)
    if held == 0 or held >= n:
        kept = "no image" if held == 0 else f"all {n} images"
        raise DataError(f"dataset.train_fraction={train_fraction} holds out {kept} of the {n} training images:"
                        " use 1.0 (no hold-out) or a fraction that leaves images on both sides, e.g. 0.9")
    order = np.random.RandomState(SPLIT_SEED).permutation(n)  # = np.random.seed(1); np.random.shuffle(range(n))
    return order[held:], order[:held]
