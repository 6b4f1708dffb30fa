"""Shared fixtures (the shared helpers are in helpers.py)."""
from __future__ import annotations

import pytest
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
