"""Shared fixtures (the shared helper functions are in helpers.py)."""
from __future__ import annotations

import pytest
import torchvision
from omegaconf import DictConfig

from helpers import make_cfg


@pytest.fixture
def quick_cfg(tmp_path):
    """A tiny offline run on the bundled subset writing under tmp_path. It counts with the exact rule
    (the quickstart preset uses the reference code's; tests/sparsity/test_schedule_rounding.py covers that), to
    sparsity 0.99 unless the test says otherwise."""
    def _make(*overrides: str) -> DictConfig:
        return make_cfg("experiment=quickstart", f"results_dir={tmp_path}", "progress=false", "epochs=4",
                        "device=cpu", "schedule.rounding=exact", "sparsity=0.99", *overrides)
    return _make


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks CIFAR files against the real archives' MD5s; tiny files cannot match them."""
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
