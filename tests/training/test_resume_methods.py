"""Every kind of method state survives a mid-epoch stop: the resumed run ends with exactly the weights,
masks and accuracy of an uninterrupted one (in-process, CPU)."""
import json
from pathlib import Path

import pytest
import torch

from helpers import stop_after
from flipout_repro.run import run
from flipout_repro.training.trainer import Trainer, TrainingInterrupted

STOP_AT = 80  # optimizer steps: the middle of epoch 3 (32 steps an epoch on the bundled subset)


def final_state(summary):
    folder = Path(summary["run_dir"])
    ck = torch.load(folder / "checkpoint.pt", weights_only=True)
    masks = torch.load(folder / "masks.pt", weights_only=True)["masks"]
    return ck["model"], masks, json.loads((folder / "summary.json").read_text())


@pytest.mark.parametrize("method, extra", [
    ("random", []),  # scores drawn from the global RNG at each event
    ("weightmom", []),  # moving averages, cubic schedule
    ("hoyer_square", ["method.lam=1e-4", "method.mode=target"]),  # regulariser, prunes itself at epoch 4
    ("str", ["method.s_init=-4"]),  # learnt thresholds inside the model (the default -3200 stays dense here)
    ("snip", []),  # scores computed once at initialisation
    # STR's recipe: the rate changes every epoch (warm-up 2, then cosine), smoothed loss, kaiming init
    ("str", ["method.s_init=-4", "optim.schedule=cosine", "optim.warmup_epochs=2", "loss.label_smoothing=0.1",
             "model.init=kaiming_normal"]),
    ("global_magnitude", ["optim.schedule=step", "optim.warmup_epochs=3"]),  # warm-up before the milestones
])
def test_stop_mid_epoch_and_resume_equals_uninterrupted(quick_cfg, tmp_path, monkeypatch, method, extra):
    args = ["epochs=6", "sparsity=0.75", f"method={method}", *extra]
    reference = final_state(run(quick_cfg(*args)))

    other = tmp_path / "interrupted"
    cfg = quick_cfg(*args, f"results_dir={other}")
    original_step = stop_after(monkeypatch, STOP_AT)
    with pytest.raises(TrainingInterrupted):
        run(cfg)
    monkeypatch.setattr(Trainer, "step", original_step)
    resumed = final_state(run(cfg))

    for k, v in reference[0].items():
        assert torch.equal(resumed[0][k], v), k
    assert all(torch.equal(a, b) for a, b in zip(resumed[1], reference[1]))
    assert resumed[2]["final_test_acc"] == reference[2]["final_test_acc"]
    assert resumed[2]["achieved_sparsity"] == reference[2]["achieved_sparsity"]
    assert lrs(resumed[2]) == lrs(reference[2])  # the same rate in every epoch


def lrs(summary):
    records = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [r["lr"] for r in map(json.loads, records) if r["type"] == "epoch"]
