"""int8 post-training quantization of a briefly trained LeNet-300-100 on the bundled MNIST subset: the
pruned zeros survive, accuracy stays within a few points of fp32, the summary keeps its other keys,
and bad input fails with a clear message and exit code 2."""
import json
from pathlib import Path

import pytest
import torch

from helpers import make_cfg
from flipout_repro.errors import ConfigError
from flipout_repro.analysis.finished_run import load_run
from flipout_repro.analysis.quantize import QuantSettings, calibration_batches, check_zeros, quantize_model
from helpers import run_hash
from flipout_repro.run import run
from flipout_repro.cli.finished_run import quantize_main

PRUNABLE = 1024 * 300 + 300 * 100 + 100 * 10  # 338,200: the bundled subset at 32x32


def quick(results_dir, *overrides):
    return make_cfg("experiment=quickstart", f"results_dir={results_dir}", "progress=false", "device=cpu",
                    "epochs=6", "sparsity=0.9", "schedule.rounding=exact", *overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 6-epoch FlipOut run to 90 % sparsity with quantize=true (a few seconds on CPU)."""
    return run(quick(tmp_path_factory.mktemp("q"), "quantize=true"))


def test_quantized_lenet_keeps_its_zeros_and_its_accuracy(trained):
    q = trained["quantization"]
    assert trained["nonzero"] == PRUNABLE - 304_380  # 90 % of 338,200 pruned, exactly
    assert q["zeros_preserved"] and q["pruned_nonzero"] == 0 and q["not_quantized"] == []
    assert q["pruned_weights"] == 304_380
    # the fp32 reference is the same CPU fp32 model the trainer evaluated last
    assert q["fp32_test_acc"] == pytest.approx(trained["final_test_acc"])
    assert trained["final_test_acc"] > 80
    assert abs(q["test_acc"] - q["fp32_test_acc"]) < 3.0
    assert q["observer"] == "histogram" and q["calibration_images"] == 4000  # 32 x 128 > 4,000 images
    assert q["by_observer"]["histogram"]["test_acc"] == q["test_acc"]


def test_pruned_weights_are_integer_zero_points_in_the_int8_model(trained):
    loaded = load_run(trained["run_dir"])
    settings = QuantSettings(observer="minmax", calibration_batches=2)
    qmodel = quantize_model(loaded.model, calibration_batches(loaded.data, settings), settings)
    modules = dict(qmodel.named_modules())
    for name, mask in zip(loaded.masks.names, loaded.masks.values):
        w = modules[name.rsplit(".", 1)[0]].weight()
        assert w.dtype == torch.qint8 and w.q_zero_point() == 0  # symmetric: 0.0 <-> integer 0
        assert int(w.int_repr()[~mask.bool()].abs().sum()) == 0
        assert w.int_repr()[mask.bool()].ne(0).float().mean() > 0.9  # kept weights are mostly nonzero


def test_zero_check_catches_a_pruned_weight_that_came_back(trained):
    loaded = load_run(trained["run_dir"])
    settings = QuantSettings(calibration_batches=1)
    qmodel = quantize_model(loaded.model, calibration_batches(loaded.data, settings), settings)
    loaded.masks.values[0][tuple(loaded.masks.values[0].bool().nonzero()[0].tolist())] = 0  # claim a kept one pruned
    z = check_zeros(qmodel, loaded.masks)
    assert not z["zeros_preserved"] and z["pruned_nonzero"] == 1


def test_flipout_quantize_merges_into_the_summary_keeping_every_other_key(trained, capsys):
    path = Path(trained["run_dir"]) / "summary.json"
    before = json.loads(path.read_text())
    quantize_main([trained["run_dir"], "--observer", "minmax", "--calibration-batches", "4"])
    after = json.loads(path.read_text())
    assert {k: v for k, v in after.items() if k != "quantization"} == \
           {k: v for k, v in before.items() if k != "quantization"}
    q = after["quantization"]
    assert q["observer"] == "minmax" and q["calibration_images"] == 512
    assert set(q["by_observer"]) == {"histogram", "minmax"}
    assert q["by_observer"]["histogram"] == before["quantization"]["by_observer"]["histogram"]
    assert q["zeros_preserved"] and abs(q["test_acc"] - q["fp32_test_acc"]) < 3.0
    assert "minmax: int8 test" in capsys.readouterr().out


def test_bad_folders_fail_with_the_path_and_the_fix(tmp_path, trained, capsys):
    cases = {
        tmp_path / "missing": "is not a folder",
        tmp_path: "is not a run folder (no config.yaml)",
    }
    for folder, problem in cases.items():
        with pytest.raises(SystemExit) as exc:
            quantize_main([str(folder)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and str(folder) in err and problem in err and "Traceback" not in err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((Path(trained["run_dir"]) / "config.yaml").read_text())
    with pytest.raises(SystemExit) as exc:
        quantize_main([str(unfinished)])
    assert exc.value.code == 2 and "has no summary.json" in capsys.readouterr().err


def test_bad_quantization_config_fails_before_training(tmp_path):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigError, match=r"quantization.observer='maxmin' is not a valid choice: use one of"):
        run(quick(tmp_path, "quantize=true", "quantization.observer=maxmin"))
    with pytest.raises(ConfigCompositionException, match=r"quantize=maybe"):  # the schema: a bool
        run(quick(tmp_path, "quantize=maybe"))
    with pytest.raises(ConfigError, match=r"calibration_batches=0 must be a positive integer or all"):
        run(quick(tmp_path, "quantize=true", "quantization.calibration_batches=0"))
    assert not (tmp_path / "runs").exists()


def test_calibration_is_one_pass_over_the_training_set_unless_a_number_of_batches_is_given():
    from flipout_repro.analysis.quantize import calibration_images
    from flipout_repro.analysis.quantize import settings_from_config

    assert settings_from_config(quick("r")).calibration_batches == "all"  # the default: the reference's pass
    assert calibration_images(50_000, QuantSettings()) == 50_000
    assert calibration_images(50_000, QuantSettings(calibration_batches=3, batch_size=128)) == 384
    assert calibration_images(100, QuantSettings(calibration_batches=3, batch_size=128)) == 100
    with pytest.raises(ValueError, match="or all"):
        QuantSettings(calibration_batches="some")


def test_quantize_keys_leave_the_run_hash_alone(tmp_path):
    plain = quick(tmp_path)
    assert run_hash(plain) == run_hash(quick(tmp_path, "quantize=true", "quantization.observer=minmax"))


def test_quantize_true_on_an_already_finished_run_quantizes_it(tmp_path):
    """The hash is the same, so the run is found finished: it is quantized instead of silently skipped."""
    first = run(quick(tmp_path, "epochs=2", "sparsity=0.5"))
    assert "quantization" not in first
    again = run(quick(tmp_path, "epochs=2", "sparsity=0.5", "quantize=true"))
    assert again["quantization"]["zeros_preserved"] is True and again["final_test_acc"] == first["final_test_acc"]
    assert run(quick(tmp_path, "epochs=2", "sparsity=0.5", "quantize=true")) == again  # the next time: nothing more to do


MODELS = {
    "lenet5": ("flipout_repro.models.lenet.LeNet5", (1, 28), {}),
    "vgg19": ("flipout_repro.models.vgg.VGG19", (3, 32), {}),
    "resnet18": ("flipout_repro.models.resnet.ResNet18", (3, 32), {}),
    "densenet121": ("flipout_repro.models.densenet.DenseNet121", (3, 32), {}),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "lenet5" else pytest.mark.slow)
                                  for n in MODELS])
def test_fx_quantization_prepares_and_converts_every_model(name):
    """Every model traces, fuses (conv+BN folded) and converts with FX on CPU, and keeps its zeros."""
    import importlib

    from flipout_repro.sparsity.masking import Masks

    target, (channels, side), kwargs = MODELS[name]
    module, _, cls = target.rpartition(".")
    torch.manual_seed(0)
    model = getattr(importlib.import_module(module), cls)(channels, 10, side, **kwargs).eval()
    masks = Masks.for_model(model)
    for m in masks.values:
        m.copy_((torch.rand_like(m) < 0.05).float())
    masks.active = True
    masks.apply_to_weights()
    x = torch.randn(2, channels, side, side)
    qmodel = quantize_model(model, iter([x]), QuantSettings(observer="per_channel"))
    z = check_zeros(qmodel, masks)
    assert z["not_quantized"] == [] and z["zeros_preserved"] and z["pruned_weights"] > 0.9 * masks.total()
    assert qmodel(x).shape == (2, 10)


def test_quantize_true_with_other_settings_quantizes_again_keyed_by_settings(tmp_path):
    """A run with an int8 result (histogram) and ``quantize=true quantization.observer=minmax``: not
    "already finished", but quantized with the settings asked; each result kept under its settings."""
    first = run(quick(tmp_path, "epochs=2", "sparsity=0.5", "quantize=true"))
    q1 = first["quantization"]
    assert q1["settings"] == "histogram-x86-calib_all" and set(q1["by_settings"]) == {"histogram-x86-calib_all"}
    assert q1["acc_drop"] == round(q1["fp32_test_acc"] - q1["test_acc"], 6)  # no float noise digits
    again = run(quick(tmp_path, "epochs=2", "sparsity=0.5", "quantize=true", "quantization.observer=minmax",
                      "quantization.calibration_batches=2"))
    q2 = again["quantization"]
    assert q2["settings"] == "minmax-x86-calib_2x128" and q2["calibration_images"] == 256
    assert set(q2["by_settings"]) == {"histogram-x86-calib_all", "minmax-x86-calib_2x128"}
    assert q2["by_settings"]["histogram-x86-calib_all"] == {k: v for k, v in q1.items()
                                                            if k not in ("by_observer", "by_settings")}
    assert again["final_test_acc"] == first["final_test_acc"]
    # asked again with settings it has: nothing to do
    assert run(quick(tmp_path, "epochs=2", "sparsity=0.5", "quantize=true")) == again


def test_a_summary_from_before_the_settings_key_is_quantized_once_more_and_kept(tmp_path):
    first = run(quick(tmp_path, "epochs=2", "sparsity=0.5", "quantize=true"))
    path = Path(first["run_dir"]) / "summary.json"
    old = json.loads(path.read_text())
    legacy = {k: v for k, v in old["quantization"].items() if k not in ("settings", "by_settings")}
    legacy["by_observer"] = {"histogram": {k: v for k, v in legacy.items() if k != "by_observer"}}
    path.write_text(json.dumps(old | {"quantization": legacy}))
    q = run(quick(tmp_path, "epochs=2", "sparsity=0.5", "quantize=true"))["quantization"]
    assert set(q["by_settings"]) == {"histogram-x86-calib_all"} and set(q["by_observer"]) == {"histogram"}
