"""The precision a run computes in is part of its protocol and decides its folder. ``precision=auto`` is
bf16 on GPUs with native bf16 and fp32 elsewhere; config.yaml records which, and an auto run shares the
folder (and table cell) of the explicit setting it computes in."""
import json
from pathlib import Path

import pytest

from helpers import make_cfg, run_folder
from flipout_repro.config import precision
from flipout_repro.config.precision import pin_precision
from flipout_repro.reporting import tables
from flipout_repro.run import run

ARGS = ["epochs=2", "sparsity=0.5", "method=global_magnitude", "schedule=one_shot", "schedule.epoch=1",
        "precision=auto"]  # the quickstart itself states fp32


def test_auto_on_a_device_with_native_bf16_lands_in_the_bf16_folder(quick_cfg, monkeypatch):
    fp32 = run(quick_cfg(*ARGS))
    assert fp32["precision"] == "fp32"
    assert Path(fp32["run_dir"]) == run_folder(quick_cfg(*ARGS)).path
    monkeypatch.setattr(precision, "has_native_bf16", lambda device: True)  # as on an A100 or newer
    bf16 = run(quick_cfg(*ARGS))
    assert bf16["precision"] == "bf16" and bf16["run_dir"] != fp32["run_dir"]
    assert "precision: bf16" in (Path(bf16["run_dir"]) / "config.yaml").read_text()
    assert bf16["hash"] == Path(bf16["run_dir"]).parent.name
    explicit = run(quick_cfg(*ARGS, "precision=bf16"))  # the same computation: the same (finished) run
    assert explicit.pop("skipped") and explicit == bf16  # found again: skipped as finished
    monkeypatch.setattr(precision, "has_native_bf16", lambda device: False)
    assert run(quick_cfg(*ARGS))["run_dir"] == fp32["run_dir"]  # found again, skipped as finished


@pytest.mark.parametrize("given, native, hashed", [("auto", False, "fp32"), ("auto", True, "bf16"),
                                                   ("fp32", True, "fp32"), ("bf16", False, "bf16")])
def test_pin_precision(monkeypatch, given, native, hashed):
    import torch

    monkeypatch.setattr(precision, "has_native_bf16", lambda device: native)
    cfg = make_cfg(f"precision={given}")
    assert pin_precision(cfg, torch.device("cpu")).precision == hashed
    assert cfg.precision == given  # the caller's config is left alone


def test_a_bf16_run_whose_config_says_auto_is_in_the_cell_of_the_bf16_runs(tmp_path):
    """A GPU run whose config.yaml says precision=auto although it trained in bf16 (its summary
    says so); the report files it with the bf16 runs of the same setting."""
    def write(seed, cfg_precision):
        cfg = {"model": {"name": "vgg19"}, "dataset": {"name": "cifar10"}, "method": {"name": "flipout"},
               "sparsity": 0.75, "seed": seed, "epochs": 10, "precision": cfg_precision}
        run_dir = tmp_path / "runs" / f"x{seed}" / "seed_0"
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({
            "model": "vgg19", "dataset": "cifar10", "method": "flipout", "seed": seed, "epochs": 10,
            "target_sparsity": 0.75, "achieved_sparsity": 0.75, "final_test_acc": 90.0 + seed,
            "best_test_acc": 91.0 + seed, "status": "completed", "precision": "bf16", "config": cfg}))
    write(0, "auto")  # auto in the config, bf16 in the summary
    write(1, "bf16")
    [c] = tables.aggregate(tables.load_runs(tmp_path / "runs")).itertuples()
    assert (c.n_seeds, c.precision) == (2, "bf16")
