"""experiment=airbench94 end to end on tiny CIFAR-10 files (in-process, CPU): it composes and trains dense and
with methods on top, the whitening layer set from the first training images and never pruned, the rate set
every step, and a stop between two Lookahead updates resumes to the uninterrupted run's weights."""
import json
from pathlib import Path

import pytest
import torch

from helpers import make_cfg, stop_after, write_cifar10
from flipout_repro.models.airbench import AirbenchNet
from flipout_repro.run import run
from flipout_repro.training.lr_schedule import triangle_factor
from flipout_repro.training.trainer import Trainer, TrainingInterrupted

# 5 x 6 = 30 training images, batch 4, drop_last: 7 steps an epoch (2 images left out each epoch)
SPE = 7


@pytest.fixture
def airbench_cfg(tmp_path, no_md5):
    write_cifar10(tmp_path / "data", n=6)

    def _make(*overrides):
        return make_cfg("experiment=airbench94", f"dataset.root={tmp_path / 'data'}", "dataset.download=false",
                        f"results_dir={tmp_path / 'results'}", "progress=false", "device=cpu",
                        "model.widths=[8,8,8]", "model.whiten_images=20", "batch_size=4", "epochs=3",
                        "eval_batch_size=5", *overrides)
    return _make


def records(summary, kind="epoch"):
    lines = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def test_dense_run_is_the_protocol(airbench_cfg):
    cfg = airbench_cfg()
    s = run(cfg)
    assert s["status"] == "completed" and s["prunable"] == 8 * 24 * 9 + 8 * 8 * 9 * 5 + 8 * 10
    epochs = records(s)
    assert [r["step"] for r in epochs] == [SPE, 2 * SPE, 3 * SPE]
    base = cfg.optim.lr  # the rate each epoch starts with, set every step by the triangle
    for r in epochs:
        step = r["step"] - SPE
        assert r["lr"] == pytest.approx(base * triangle_factor(step, 3 * SPE))
    # the whitening layer: the first 20 training images, normalised with the protocol's mean/std
    model = torch.load(Path(s["run_dir"]) / "model.pt", weights_only=True)
    from flipout_repro.training.build import load_data
    data = load_data(cfg, torch.device("cpu"))
    fresh = AirbenchNet(3, 10, 32, widths=(8, 8, 8), whiten_images=20)
    fresh.init_from_data(data.normalize(data.train_x[:20]))
    assert torch.equal(model["whiten.weight"], fresh.whiten.weight)
    assert s["config"]["loss"]["reduction"] == "sum" and s["config"]["tta"] == 2


@pytest.mark.parametrize("method", ["flipout", "rigl", "snip", "global_magnitude"])
def test_methods_run_on_top(airbench_cfg, method):
    s = run(airbench_cfg(f"method={method}", "sparsity=0.9", "epochs=5"))
    assert s["status"] == "completed"
    assert s["achieved_sparsity"] == pytest.approx(0.9, abs=2e-3)
    model = torch.load(Path(s["run_dir"]) / "model.pt", weights_only=True)
    assert (model["whiten.weight"] != 0).all()  # never pruned
    kept = sum(int((model[k] != 0).sum()) for k in model if k.endswith("conv1.weight") or
               k.endswith("conv2.weight") or k == "head.weight")
    assert kept <= round(0.1 * s["prunable"]) + 1


def test_stop_between_lookahead_updates_resumes_exactly(airbench_cfg, tmp_path, monkeypatch):
    args = ["method=global_magnitude", "sparsity=0.5", "schedule=one_shot", "schedule.epoch=1"]
    reference = run(airbench_cfg(*args))
    cfg = airbench_cfg(*args, f"results_dir={tmp_path / 'stopped'}")
    original = stop_after(monkeypatch, 12)  # epoch 2, two steps after the update at step 10
    with pytest.raises(TrainingInterrupted):
        run(cfg)
    monkeypatch.setattr(Trainer, "step", original)
    resumed = run(cfg)
    a = torch.load(Path(reference["run_dir"]) / "model.pt", weights_only=True)
    b = torch.load(Path(resumed["run_dir"]) / "model.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["final_test_acc"] == reference["final_test_acc"]


def test_an_imp_fine_tuning_level_starts_at_its_step_of_the_triangle(airbench_cfg):
    cfg = airbench_cfg("method=imp", "method.rewind=finetune", "method.finetune_epochs=1", "sparsity=0.36")
    s = run(cfg)
    assert s["status"] == "completed" and s["imp"]["level"] == 2
    [epoch] = records(s)  # a level trains the last epoch only: steps 15-21 of 21
    assert epoch["epoch"] == 3 and epoch["step"] == 3 * SPE
    assert epoch["lr"] == pytest.approx(cfg.optim.lr * triangle_factor(2 * SPE, 3 * SPE))
