"""experiment=str_resnet18_cifar10: composes with STR's recipe, validates, and trains 2 epochs on tiny CIFAR-10
files written in the real pickle format."""
import json
from pathlib import Path

import pytest

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.run import run
from helpers import write_cifar10


def test_the_preset_holds_strs_recipe_and_validates():
    cfg = make_cfg("experiment=str_resnet18_cifar10")
    validate(cfg)
    assert (cfg.model.name, cfg.model.init, cfg.dataset.name, cfg.method.name, cfg.schedule.name) == \
        ("resnet18", "kaiming_normal", "cifar10", "str", "none")
    assert (cfg.method.s_init, cfg.method.s_weight_decay, cfg.optim.weight_decay) == (-100.0, None, 0.001)
    o = cfg.optim
    assert (o.lr, o.momentum, o.nesterov, o.schedule, o.warmup_epochs) == (0.256, 0.875, False, "cosine", 5)
    assert (cfg.epochs, cfg.batch_size, cfg.loss.label_smoothing) == (100, 256, 0.1)


def test_the_preset_trains_two_epochs_on_tiny_cifar(tmp_path, no_md5):  # noqa: F811
    write_cifar10(tmp_path / "data", n=8)
    cfg = make_cfg("experiment=str_resnet18_cifar10", "epochs=2", "optim.warmup_epochs=1", "batch_size=8",
                   f"dataset.root={tmp_path / 'data'}", "dataset.download=false", "device=cpu", "progress=false",
                   f"results_dir={tmp_path / 'results'}")
    validate(cfg)
    summary = run(cfg)
    records = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["lr"] for r in epochs] == pytest.approx([0.256, 0.256])  # warm-up 1/1, then cosine at its top
    assert summary["sparsity_is_outcome"] and summary["target_sparsity"] == 0.9
    # s = -100: sigmoid(s) = 0 in fp32, so nothing is thresholded; the only zeros are the 2 weights that
    # torch's CPU normal_ draws as exactly 0.0 in this seed's kaiming init (of 11,164,352)
    assert summary["achieved_sparsity"] < 1e-6
    assert all(v == 0.0 for k, v in epochs[-1].items() if k.startswith("str_threshold."))
