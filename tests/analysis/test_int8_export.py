"""The int8 model flipout-quantize measured is saved in the run folder and loads back (TorchScript,
without our code) with the measured test accuracy and any batch size."""
import pytest
import torch

from helpers import make_cfg
from flipout_repro.analysis.finished_run import load_run
from flipout_repro.analysis.int8_export import int8_file_name, load_int8
from flipout_repro.analysis.quantize import QuantSettings
from flipout_repro.cli.finished_run import quantize_main
from flipout_repro.run import run
from flipout_repro.training.evaluate import evaluate


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


@pytest.mark.parametrize("name", ["resnet18", "vgg19"])
def test_a_quantized_conv_net_is_saved_and_loads_back_with_the_same_outputs(tmp_path, name):
    """The CIFAR conv nets trace too (BatchNorm folded, residual adds and pooling quantized): the reloaded
    TorchScript model gives the converted model's logits, at another batch size than the traced one."""
    from flipout_repro.analysis.int8_export import save_int8
    from flipout_repro.analysis.quantize import quantize_model
    from flipout_repro.training.build import build_model

    torch.manual_seed(0)
    model = build_model(make_cfg(f"model={name}").model, 3, 10, 32).eval()
    images = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    qmodel = quantize_model(model, iter(images), QuantSettings(observer="minmax"))
    path = save_int8(qmodel, images[0], tmp_path / "int8.pt")
    reloaded = load_int8(path)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded(x), qmodel(x)) and reloaded(x).shape == (3, 10)
