"""Helpers the tests share: composing configs, running the CLI, writing tiny data sets and summaries."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from flipout_repro.config.identity import identity, run_dir as identity_run_dir
from flipout_repro.config.precision import pin_precision
from flipout_repro.config.targets import prepare
from flipout_repro.config.validate import compose_config
from flipout_repro.rundir import RunDir, Summary, write_json
from flipout_repro.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def make_cfg(*overrides: str) -> DictConfig:
    """The composed run config for ``overrides``, as flipout-train would see it."""
    return compose_config(*overrides)


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


def write_cifar10(root, n=6, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        batches[name] = (x, y)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": x, "labels": y, "batch_label": name}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return batches


CLASSES = ["n01440764", "n01443537", "n01484850"]


MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def write_image_folder(root, per_class=(4, 2), size=(80, 64)):
    """3 classes x 4 train and 2 val JPEGs of 80x64 (w x h) in train/<wnid>/ and val/<wnid>/; one grey."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for wnid in CLASSES:
            (root / split / wnid).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / wnid / f"{wnid}_{i}.JPEG", quality=95)
    Image.fromarray(np.full((size[1], size[0]), 90, np.uint8)).save(root / "train" / CLASSES[1] / "grey.JPEG")
    return root


def epoch(d, batch_size, seed=0, start=0):
    g = torch.Generator().manual_seed(seed)
    order = d.epoch_order(g)
    return order, list(d.train_batches(batch_size, g, order, start))


def write_summary(root, *overrides, seed=0, acc=90.0, status="completed", achieved=None, outcome=False, int8=None,
                  train_fraction=None, speedups=None) -> Path:
    """A run's summary.json as run.py writes it (a rundir.Summary), in the run folder flipout-train gives the
    config composed from ``overrides`` (prepared, its precision pinned on a CPU) and ``seed``: the report
    reads the identity of a real config. Returns the run folder."""
    cfg = json.loads(_prepared(tuple(overrides))) | {"seed": seed, "results_dir": str(root)}
    ident = identity(cfg)
    folder = ident.folder(root)
    extra = {}
    if int8 is not None:
        extra["quantization"] = {"test_acc": int8, "fp32_test_acc": acc}
    if train_fraction is not None:
        extra["train_macs_fraction"] = train_fraction
    if speedups is not None:
        extra["inference"] = {f"speedup_b{b}": v for b, v in zip((1, 64), speedups)}
    summary = Summary(model=cfg["model"]["name"], dataset=cfg["dataset"]["name"], method=cfg["method"]["name"],
                      seed=seed, target_sparsity=cfg["sparsity"], config=cfg, epochs=cfg["epochs"], hash=ident.hash,
                      achieved_sparsity=cfg["sparsity"] if achieved is None else achieved, sparsity_is_outcome=outcome,
                      status=status, final_test_acc=acc, best_test_acc=acc + 1, precision=cfg["precision"],
                      wall_time_s=360.0 if status == "completed" else 36.0, device="cuda:0", run_dir=str(folder),
                      extra=extra)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "summary.json", summary.to_json())
    return folder


@lru_cache(maxsize=None)
def _prepared(overrides: tuple[str, ...]) -> str:
    """The prepared config of ``overrides`` as JSON, its precision pinned on a CPU (composed once)."""
    cfg, _ = prepare(compose_config(*overrides))
    return json.dumps(OmegaConf.to_container(pin_precision(cfg, torch.device("cpu")), resolve=True))


def run_hash(cfg: DictConfig) -> str:
    """The ``<hash8>`` of the run folder a composed config gets (config/identity.py)."""
    return identity(cfg).hash


def run_folder(cfg: DictConfig) -> RunDir:
    """The run folder flipout-train would use for a composed config (on this CPU machine)."""
    prepared, _ = prepare(cfg)
    return identity_run_dir(pin_precision(prepared, torch.device("cpu")))
