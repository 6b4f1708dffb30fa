"""A crash after a mid-epoch prune event writes no record twice on resume; a
stop request after the weights went bad keeps the last good checkpoint (in-process, CPU)."""
import json
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from flipout_repro.run import run
from flipout_repro.training.trainer import Trainer, TrainingDiverged

# 32 optimizer steps an epoch on the bundled subset (4,000 images, batch 128)


class Crash(RuntimeError):
    """Stands for SIGKILL: the process stops between two steps, nothing more is written."""


def crash_at(monkeypatch, n):
    original = Trainer.step
    calls = {"n": 0}

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(f"killed before step {n}")
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "step", step)
    return original


def records(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def tb_scalars(run_dir, tag):
    acc = EventAccumulator(str(Path(run_dir) / "tb"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.mark.parametrize("schedule, crash", [
    (["schedule=one_shot", "schedule.epoch=1.5"], 55),  # event at step 48, in epoch 2; killed at step 55
    (["schedule=cubic", "schedule.every_steps=8", "schedule.end=0.5"], 51),  # events at 40 and 48 in epoch 2
])
def test_a_mid_epoch_prune_record_is_not_doubled_by_a_resume(quick_cfg, tmp_path, monkeypatch, schedule, crash):
    args = ["epochs=4", "sparsity=0.75", "method=global_magnitude", *schedule]
    reference = run(quick_cfg(*args))
    cfg = quick_cfg(*args, f"results_dir={tmp_path / 'crashed'}")
    original = crash_at(monkeypatch, crash)
    with pytest.raises(Crash):
        run(cfg)
    [folder] = (tmp_path / "crashed").glob("runs/**/seed_0")
    before = [r for r in records(folder) if r["type"] == "prune"]
    assert before and max(r["step"] for r in before) > 32  # a mid-epoch event past the epoch-1 checkpoint
    monkeypatch.setattr(Trainer, "step", original)
    resumed = run(cfg)
    ref, got = records(reference["run_dir"]), records(resumed["run_dir"])
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time_s", "wall_time_s")} for r in rs]  # noqa: E731
    assert strip(got) == strip(ref)  # every record once, in order, as in an uninterrupted run
    for tag in ("per_step/prune/removed", "per_step/prune/sparsity", "per_epoch/test_acc"):
        assert tb_scalars(resumed["run_dir"], tag) == tb_scalars(reference["run_dir"], tag), tag


def test_a_stop_after_the_weights_went_bad_keeps_the_last_good_checkpoint(quick_cfg, monkeypatch):
    """NaN weights in the middle of epoch 2, then SIGTERM: no checkpoint of the bad weights replaces
    epoch 1's, and what the failure says is kept is what is on disk."""
    cfg = quick_cfg("epochs=4", "sparsity=0.75", "method=global_magnitude")
    original = Trainer.step
    calls = {"n": 0}

    def step(self, x, y):
        out = original(self, x, y)
        calls["n"] += 1
        if calls["n"] == 40:
            with torch.no_grad():
                next(self.model.parameters()).fill_(math.nan)
            self.stop_requested = True  # what the SIGTERM handler does
        return out

    monkeypatch.setattr(Trainer, "step", step)
    with pytest.raises(TrainingDiverged, match=r"the checkpoint after step 32 \(end of epoch 1\) is kept"):
        run(cfg)
    [ck_path] = Path(cfg.results_dir).glob("runs/**/checkpoint.pt")
    ck = torch.load(ck_path, weights_only=True)
    assert ck["state"]["epoch"] == 1 and ck["state"]["batch"] == 0 and ck["state"]["step"] == 32
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    summary = json.loads((ck_path.parent / "summary.json").read_text())
    assert summary["status"] == "failed" and "the checkpoint after step 32 (end of epoch 1) is kept" in summary["error"]
