"""Shared fixtures: composing configs with Hydra's compose API and running the CLI in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from flipout_repro.config import compose_config
from flipout_repro.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def make_cfg(*overrides: str) -> DictConfig:
    """The composed run config for ``overrides``, as flipout-train would see it."""
    return compose_config(*overrides)


@pytest.fixture
def quick_cfg(tmp_path):
    """A tiny offline run on the bundled subset writing under tmp_path. It counts with the exact rule
    (the quickstart preset uses the reference code's; tests/test_schedule_rounding.py covers that), to
    sparsity 0.99 unless the test says otherwise."""
    def _make(*overrides: str) -> DictConfig:
        return make_cfg("experiment=quickstart", f"results_dir={tmp_path}", "progress=false", "epochs=4",
                        "device=cpu", "schedule.rounding=exact", "sparsity=0.99", *overrides)
    return _make


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """flipout-train ARGS in a subprocess (the installed console script's module); no wall-clock limit:
    a loaded machine is slow, not wrong."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "flipout_repro.cli", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True)


def stop_after(monkeypatch, n: int, check=None):
    """Make Trainer ask for a stop after its ``n``-th step, as the SIGTERM/SIGINT handler does (the loop then
    writes a checkpoint of that exact position and raises TrainingInterrupted); ``check(x, y)`` sees every
    batch. Returns the original ``Trainer.step``, to put back before resuming."""
    original, calls = Trainer.step, {"n": 0}

    def step_then_stop(self, x, y):
        if check is not None:
            check(x, y)
        out = original(self, x, y)
        calls["n"] += 1
        if calls["n"] == n:
            self.stop_requested = True
        return out

    monkeypatch.setattr(Trainer, "step", step_then_stop)
    return original
