"""dataset.train_fraction: FORCE's fixed hold-out of the training set, evaluated every epoch as val_*."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import make_cfg
from flipout_repro import data as data_mod
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.data import DataError, holdout_split
from helpers import run_hash
from flipout_repro.run import run


def force_reference_split(n, frac):
    """naver/force experiments/datasets.py:104-112 with valid_size = 1 - frac, random_seed = 1."""
    indices = list(range(n))
    split = int(np.floor((1 - frac) * n))
    state = np.random.get_state()
    np.random.seed(1)
    np.random.shuffle(indices)
    np.random.set_state(state)
    return indices[split:], indices[:split]


def test_the_split_is_forces_on_cifar_sized_sets():
    before = np.random.get_state()[1].copy()
    keep, held = holdout_split(50_000, 0.9)
    ref_keep, ref_held = force_reference_split(50_000, 0.9)
    assert keep.tolist() == ref_keep and held.tolist() == ref_held
    assert len(held) == 4_999 and len(keep) == 45_001  # floor(0.09999999999999998 * 50000)
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's global generator is left alone


@pytest.mark.parametrize("n, frac", [(4000, 0.9), (13, 0.5), (100, 0.75)])
def test_small_splits_match_the_reference_too(n, frac):
    keep, held = holdout_split(n, frac)
    assert (keep.tolist(), held.tolist()) == force_reference_split(n, frac)
    assert sorted(keep.tolist() + held.tolist()) == list(range(n))


def test_nothing_is_held_out_at_one_and_an_empty_side_is_an_error():
    assert holdout_split(50_000, 1.0) is None
    with pytest.raises(DataError, match=r"dataset.train_fraction=0.999 holds out no image of the 100 training"):
        holdout_split(100, 0.999)
    with pytest.raises(DataError, match=r"holds out all 100 images"):
        holdout_split(100, 1e-17)


def test_load_holds_out_the_same_images_for_every_run():
    full = data_mod.load("mnist5k", "unused", False, torch.device("cpu"), [0.5], [0.5])
    assert full.val_x is None and full.val_y is None
    keep, held = holdout_split(4000, 0.9)
    for _ in range(2):  # no seed enters: every seed and method sees this split
        d = data_mod.load("mnist5k", "unused", False, torch.device("cpu"), [0.5], [0.5], train_fraction=0.9)
        assert torch.equal(d.train_x, full.train_x[keep]) and torch.equal(d.train_y, full.train_y[keep])
        assert torch.equal(d.val_x, full.train_x[held]) and torch.equal(d.val_y, full.train_y[held])
        assert torch.equal(d.test_x, full.test_x)
        assert d.steps_per_epoch(128) == -(-3601 // 128)
    x, y = next(d.val_batches(7))
    assert torch.equal(y, full.train_y[held[:7]]) and torch.allclose(x, (full.train_x[held[:7]] / 255 - 0.5) / 0.5)


@pytest.mark.parametrize("value, message", [
    ("0", "dataset.train_fraction=0.0 must be in (0, 1]"),
    ("1.5", "dataset.train_fraction=1.5 must be in (0, 1]"),
    ("-0.1", "dataset.train_fraction=-0.1 must be in (0, 1]"),
])
def test_bad_fractions_are_named(value, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("experiment=quickstart", f"dataset.train_fraction={value}"))
    assert message in str(err.value) and "e.g. 0.9" in str(err.value)


def test_the_knob_at_one_keeps_run_hashes():
    base = make_cfg("experiment=quickstart")
    assert run_hash(make_cfg("experiment=quickstart", "dataset.train_fraction=1")) == run_hash(base)
    assert run_hash(make_cfg("experiment=quickstart", "dataset.train_fraction=0.9")) != run_hash(base)


def test_a_run_records_val_metrics_only_when_it_holds_out(quick_cfg):
    args = ("epochs=2", "method=global_magnitude", "schedule=one_shot", "sparsity=0.5")
    with_val = run(quick_cfg(*args, "dataset.train_fraction=0.9"))
    plain = run(quick_cfg(*args))

    records = [json.loads(line) for line in (Path(with_val["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0 <= r["val_acc"] <= 100 and r["val_loss"] > 0 for r in epochs)
    assert with_val["final_val_acc"] == epochs[-1]["val_acc"]
    assert with_val["best_val_acc"] == max(r["val_acc"] for r in epochs)
    tb = EventAccumulator(str(Path(with_val["run_dir"]) / "tb"))
    tb.Reload()
    assert [e.value for e in tb.Scalars("per_epoch/val_acc")] == pytest.approx([r["val_acc"] for r in epochs])

    plain_records = (Path(plain["run_dir"]) / "metrics.jsonl").read_text()
    assert "val_acc" not in plain_records and "val_acc" not in plain and "best_val_acc" not in plain
    assert with_val["run_dir"] != plain["run_dir"]
    # the held-out images are not trained on: fewer steps per epoch
    assert epochs[-1]["step"] == 2 * -(-3601 // 128)


def test_the_held_out_evaluation_does_not_change_training(quick_cfg, monkeypatch, tmp_path):
    """Evaluating the held-out images (eval mode, no gradients, no random numbers) leaves the trained
    weights bitwise as they are without that evaluation."""
    from flipout_repro.training import trainer

    args = ("epochs=2", "method=global_magnitude", "schedule=one_shot", "sparsity=0.5", "dataset.train_fraction=0.9")
    evaluated = run(quick_cfg(*args))
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda *a, **k: (1.0, 0.0) if a[6:] == ("val",) else real(*a, **k))
    cfg = quick_cfg(*args, f"results_dir={tmp_path / 'other'}")
    skipped = run(cfg)
    a = torch.load(Path(evaluated["run_dir"]) / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(Path(skipped["run_dir"]) / "checkpoint.pt", weights_only=True)["model"]
    assert skipped["final_val_acc"] == 0.0 and all(torch.equal(a[k], b[k]) for k in a)
    assert skipped["final_test_acc"] == evaluated["final_test_acc"]

