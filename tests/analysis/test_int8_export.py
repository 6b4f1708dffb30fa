"""The int8 model flipout-quantize measured is saved in the run folder and loads back (TorchScript,
without our code) with the measured test accuracy and any batch size."""
import pytest
import torch

from conftest import make_cfg
from flipout_repro.analysis.finished_run import load_run
from flipout_repro.analysis.int8_export import int8_file_name, load_int8
from flipout_repro.analysis.quantize import QuantSettings
from flipout_repro.cli.finished_run import quantize_main
from flipout_repro.run import run
from flipout_repro.training.trainer import evaluate


def test_saved_int8_model_loads_and_gives_the_measured_accuracy(tmp_path, capsys):
    summary = run(make_cfg("experiment=quickstart", f"results_dir={tmp_path}", "progress=false", "device=cpu",
                           "epochs=5", "sparsity=0.9", "schedule.rounding=exact"))
    quantize_main([summary["run_dir"], "--calibration-batches", "2", "--batch-size", "64"])
    loaded = load_run(summary["run_dir"], "cpu")
    q = loaded.summary["quantization"]
    name = int8_file_name(QuantSettings(observer="histogram", calibration_batches=2, batch_size=64))
    assert q["model_file"] == name == "int8_histogram_x86_calib2x64.pt"
    model = load_int8(loaded.run.path / name)
    assert isinstance(model, torch.jit.ScriptModule)
    _, acc = evaluate(model, loaded.data, 1000)
    assert acc == pytest.approx(q["test_acc"]) and acc > 50
    x, _ = next(loaded.data.test_batches(3))  # traced on 8 images, run on 3
    assert model(x).shape == (3, 10)
