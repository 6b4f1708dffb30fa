"""A run on dataset=imagenet (a tiny ImageFolder of real JPEGs): SNIP draws its batch through the stream,
a stop in the middle of epoch 2 resumes to exactly the weights of an uninterrupted run, with another
worker count (and FlipOut, whose noise comes from the global generator, bitwise);
a missing folder stops the CLI with one line and exit code 2."""
import json
from pathlib import Path

import pytest
import torch

from helpers import make_cfg, run_cli, stop_after
from flipout_repro.run import run
from flipout_repro.training.trainer import Trainer, TrainingInterrupted
from helpers import write_image_folder

STOP_AT = 4  # optimizer steps: 10 training images, batch 4 -> 3 steps an epoch; step 4 is in epoch 2


def cfg_for(root, results, workers, *extra):
    return make_cfg("dataset=imagenet", f"dataset.root={root}", "dataset.num_classes=3", "dataset.image_size=16",
                    "dataset.eval_resize=18", f"dataset.workers={workers}", "dataset.train_fraction=0.75",
                    "model=resnet18", "method=snip", "sparsity=0.5", "epochs=2", "batch_size=4", "device=cpu",
                    "progress=false", f"results_dir={results}", *extra)


def final(summary):
    folder = Path(summary["run_dir"])
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"], torch.load(folder / "masks.pt",
                                                                                         weights_only=True)["masks"]


def test_stop_and_resume_on_streamed_files_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imagenet")
    reference = run(cfg_for(root, tmp_path / "a", 0))
    assert reference["dataset"] == "imagenet" and reference["achieved_sparsity"] == pytest.approx(0.5, abs=1e-6)
    assert 0 <= reference["final_val_acc"] <= 100 and reference["best_val_acc"] >= reference["final_val_acc"]

    def check(x, y):
        assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.float32

    cfg = cfg_for(root, tmp_path / "b", 2)
    original_step = stop_after(monkeypatch, STOP_AT, check)
    with pytest.raises(TrainingInterrupted, match=r"stopped after step 4 \(epoch 2, batch 1\)"):
        run(cfg)
    monkeypatch.setattr(Trainer, "step", original_step)
    resumed = run(cfg)

    assert Path(resumed["run_dir"]).relative_to(tmp_path / "b") == Path(reference["run_dir"]).relative_to(tmp_path / "a")
    weights, masks = final(resumed)
    ref_weights, ref_masks = final(reference)
    assert all(torch.equal(weights[k], v) for k, v in ref_weights.items())
    assert all(torch.equal(a, b) for a, b in zip(masks, ref_masks))
    for key in ("final_test_acc", "final_val_acc", "best_val_acc", "final_train_acc"):
        assert resumed[key] == reference[key], key
    records = [json.loads(r) for r in (Path(resumed["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2]


@pytest.mark.slow  # starts flipout-train in a subprocess
def test_a_missing_image_folder_is_one_line_and_exit_code_2(tmp_path):
    missing = tmp_path / "no_imagenet"
    r = run_cli("dataset=imagenet", f"dataset.root={missing}", "model=resnet18", "device=cpu", "progress=false",
                f"results_dir={tmp_path / 'results'}")
    assert r.returncode == 2, r.stderr[-2000:]
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("flipout-train: error:")]
    assert f"{(missing / 'train').resolve()} is not a folder: set dataset.root" in line
    assert not (tmp_path / "results" / "runs").exists()


def test_flipout_resumes_bitwise_on_streamed_files(tmp_path, monkeypatch):
    """FlipOut draws its gradient noise from torch's global generator at every step: the resumed half-epoch's
    extra DataLoader iterator must not move that stream."""
    root = write_image_folder(tmp_path / "imagenet")

    def cfg(results):
        return make_cfg("dataset=imagenet", f"dataset.root={root}", "dataset.num_classes=3", "dataset.image_size=12",
                        "dataset.eval_resize=14", "dataset.workers=0", "model=lenet300_100", "method=flipout",
                        "sparsity=0.5", "epochs=2", "batch_size=4", "device=cpu", "progress=false",
                        f"results_dir={results}")

    reference = run(cfg(tmp_path / "a"))
    original_step = stop_after(monkeypatch, 5)  # 13 images, batch 4: step 5 is epoch 2's first
    with pytest.raises(TrainingInterrupted, match=r"stopped after step 5 \(epoch 2, batch 1\)"):
        run(cfg(tmp_path / "b"))
    monkeypatch.setattr(Trainer, "step", original_step)
    resumed = run(cfg(tmp_path / "b"))
    weights, ref_weights = final(resumed)[0], final(reference)[0]
    assert all(torch.equal(weights[k], v) for k, v in ref_weights.items())
    assert resumed["final_test_acc"] == reference["final_test_acc"]
    losses = [[r["train_loss"] for r in map(json.loads, (Path(s["run_dir"]) / "metrics.jsonl").read_text().splitlines())
               if r["type"] == "epoch"] for s in (reference, resumed)]
    assert losses[0] == losses[1] and len(losses[0]) == 2
