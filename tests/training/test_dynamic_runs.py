"""SET and RigL end to end on the bundled subset: the sparsity stays at the target at every epoch, each
layer keeps its count, the updates are recorded, and a stop in the middle of an update interval resumes
bit-identically (in-process, CPU)."""
import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import stop_after
from flipout_repro.run import run
from flipout_repro.training.trainer import Trainer, TrainingInterrupted


def records(summary):
    lines = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dynamic_run_keeps_the_target_sparsity_and_layer_counts(quick_cfg, method):
    summary = run(quick_cfg(f"method={method}", "epochs=4", "sparsity=0.9", "method.update_every=10"))
    recs = records(summary)
    prune = [r for r in recs if r["type"] == "prune"]
    epochs = [r for r in recs if r["type"] == "epoch"]
    updates = [r for r in recs if r["type"] == "mask_update"]
    assert len(prune) == 1 and prune[0]["step"] == 0  # sparse from the first step
    assert prune[0]["sparsity"] == pytest.approx(0.9, abs=1e-5)
    assert [e["sparsity"] for e in epochs] == [prune[0]["sparsity"]] * 4
    assert all(u["sparsity"] == prune[0]["sparsity"] for u in updates)
    steps = epochs[-1]["step"]
    end = int(0.75 * steps)
    assert [u["step"] for u in updates] == [s + 1 for s in range(0, end + 1, 10)]  # after step indices 0, 10, ...
    assert updates[0]["drop_fraction"] == pytest.approx(0.3) and updates[-1]["drop_fraction"] < 0.3
    assert all(u["dropped"] == u["grown"] > 0 for u in updates[:-1])
    masks = torch.load(Path(summary["run_dir"]) / "masks.pt", weights_only=True)
    kept = dict(zip(masks["names"], (int(m.sum()) for m in masks["masks"])))
    assert kept == prune[0]["kept"]  # every layer's count is exact
    ever = [e["ever_active"] for e in epochs]
    assert ever == sorted(ever) and 0.1 < ever[0] and ever[-1] == summary["ever_active"] < 1
    assert summary["mask_updates"] == len(updates)
    acc = EventAccumulator(str(Path(summary["run_dir"]) / "tb"))
    acc.Reload()  # TensorBoard: one point per update, at its optimizer step; the ever-active share per epoch
    at = lambda tag: [(e.step, e.value) for e in acc.Scalars(tag)]  # noqa: E731
    assert at("per_step/mask_update/dropped") == [(u["step"], u["dropped"]) for u in updates]
    assert at("per_step/mask_update/dropped_layer/fc1.weight") == [(u["step"], u["dropped_layer"]["fc1.weight"])
                                                                   for u in updates]
    assert at("per_step/prune/sparsity") == [(0, pytest.approx(prune[0]["sparsity"]))]
    assert [e.value for e in acc.Scalars("per_epoch/ever_active")] == pytest.approx(ever)
    assert [x for x, _ in at("per_epoch/test_acc")] == [1, 2, 3, 4]
    tags = acc.Tags()["scalars"]  # every tag names its x axis: epochs, optimizer steps, or the run's end
    assert {t.split("/")[0] for t in tags} == {"per_epoch", "per_step", "run_end"}
    assert [t for t in tags if "dropped_layer" in t and not t.startswith("per_step/mask_update/")] == []


STOP_AT = 80  # optimizer steps: in epoch 3, between the updates at step indices 75 and 90


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_stop_mid_update_interval_and_resume_equals_uninterrupted(quick_cfg, tmp_path, monkeypatch, method):
    args = ["epochs=5", "sparsity=0.9", f"method={method}", "method.update_every=15"]
    reference = run(quick_cfg(*args))

    cfg = quick_cfg(*args, f"results_dir={tmp_path / 'interrupted'}")
    original_step = stop_after(monkeypatch, STOP_AT)
    with pytest.raises(TrainingInterrupted):
        run(cfg)
    monkeypatch.setattr(Trainer, "step", original_step)
    resumed = run(cfg)

    def final(summary):
        folder = Path(summary["run_dir"])
        return (torch.load(folder / "checkpoint.pt", weights_only=True),
                torch.load(folder / "masks.pt", weights_only=True)["masks"])

    (ck_a, masks_a), (ck_b, masks_b) = final(reference), final(resumed)
    for k, v in ck_a["model"].items():
        assert torch.equal(ck_b["model"][k], v), k
    assert all(torch.equal(a, b) for a, b in zip(masks_a, masks_b))
    assert all(torch.equal(a, b) for a, b in zip(ck_a["method"]["ever"], ck_b["method"]["ever"]))
    assert resumed["final_test_acc"] == reference["final_test_acc"]
    assert resumed["ever_active"] == reference["ever_active"]
    strip = [{k: v for k, v in r.items() if k not in ("time_s", "wall_time_s")} for r in records(reference)]
    assert [{k: v for k, v in r.items() if k not in ("time_s", "wall_time_s")} for r in records(resumed)] == strip
