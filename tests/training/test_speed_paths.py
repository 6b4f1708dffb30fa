"""Correctness of the fast paths (timings belong to flipout-bench): bf16 autocast and torch.compile give
the same sparsity and (nearly) the same masks as fp32 eager on CPU; the benchmark runs and writes JSON."""
import json

import pytest
import torch

from flipout_repro.cli.bench import main as bench_main
from flipout_repro.run import run


def masks_of(summary):
    from pathlib import Path

    return torch.load(Path(summary["run_dir"]) / "masks.pt", weights_only=True)["masks"]


def agreement(a, b):
    same = sum(int((x == y).sum()) for x, y in zip(a, b))
    return same / sum(x.numel() for x in a)


def test_bf16_gives_the_same_sparsity_and_nearly_the_same_masks(quick_cfg):
    fp32 = run(quick_cfg("epochs=2", "sparsity=0.5", "precision=fp32"))
    bf16 = run(quick_cfg("epochs=2", "sparsity=0.5", "precision=bf16"))
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert bf16["nonzero"] == fp32["nonzero"] == 338_200 // 2
    assert agreement(masks_of(fp32), masks_of(bf16)) > 0.95
    assert abs(bf16["final_test_acc"] - fp32["final_test_acc"]) < 3.0


@pytest.mark.slow
def test_compiled_model_gives_the_same_masks(quick_cfg):
    eager = run(quick_cfg("epochs=2", "sparsity=0.5", "compile=false"))
    compiled = run(quick_cfg("epochs=2", "sparsity=0.5", "compile=true", "seed=1"))
    again = run(quick_cfg("epochs=2", "sparsity=0.5", "compile=false", "seed=1"))
    assert compiled["nonzero"] == eager["nonzero"]
    assert agreement(masks_of(compiled), masks_of(again)) > 0.99


def test_bench_runs_a_few_steps_and_writes_json(tmp_path, capsys):
    bench_main(["--model", "lenet300_100", "--methods", "flipout", "global_magnitude", "--steps", "2",
                "--rounds", "2", "--warmup", "1", "--batch-size", "32", "--device", "cpu", "--out", str(tmp_path)])
    [result] = json.loads((tmp_path / "cpu.json").read_text())
    assert list(result["methods"]) == ["dense", "flipout", "global_magnitude"]
    assert result["methods"]["dense"]["ratio_to_dense"] == 1.0
    for r in result["methods"].values():
        assert r["step_ms"] > 0 and r["images_per_s"] > 0 and len(r["step_ms_rounds"]) == 2
    out = capsys.readouterr().out
    assert "| flipout |" in out
    assert "measured on CUDA devices only" in out  # the CPU table says why its memory column is empty


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_bench_on_a_missing_cuda_device_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["--model", "lenet300_100", "--device", "cuda"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert err.startswith("flipout-bench: error: --device=cuda: torch sees no CUDA device")


@pytest.fixture
def restore_backend_flags():
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def test_deterministic_switches_cudnn_autotuning_and_torch_algorithms(restore_backend_flags):
    from flipout_repro.training.build import set_determinism

    set_determinism(False, torch.device("cuda"))  # the flags are process-wide; no GPU is needed to set them
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()
    set_determinism(True, torch.device("cuda"))
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    set_determinism(False, torch.device("cpu"))  # and back: a later run in the same process is not slowed
    assert not torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()


def test_deterministic_run_on_cpu_matches_the_default_run(quick_cfg, tmp_path, restore_backend_flags):
    """CPU kernels are deterministic either way: the knob changes nothing there, and is not in the hash."""
    fast = run(quick_cfg("epochs=2", "sparsity=0.5"))
    det = run(quick_cfg("epochs=2", "sparsity=0.5", "deterministic=true", f"results_dir={tmp_path}/det"))
    assert det["run_dir"] != fast["run_dir"]  # trained again, in its own results_dir
    assert det["run_dir"].split("/")[-3:] == fast["run_dir"].split("/")[-3:]  # same hash and seed folder
    assert det["final_test_acc"] == fast["final_test_acc"]
    assert all(torch.equal(a, b) for a, b in zip(masks_of(fast), masks_of(det)))


@pytest.mark.parametrize("capability, expected", [((7, 0), None), ((7, 5), None), ((8, 0), torch.bfloat16),
                                                  ((9, 0), torch.bfloat16)])
def test_auto_precision_is_bf16_only_on_gpus_with_native_bf16(monkeypatch, capability, expected):
    """V100 (7.0) and T4 (7.5) only emulate bf16 (torch.cuda.is_bf16_supported() still says yes)."""
    from helpers import make_cfg
    from flipout_repro.training.build import speed_settings

    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: asked.append(str(d)) or capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    s = speed_settings(make_cfg("precision=auto"), torch.device("cuda:1"))
    assert s["autocast_dtype"] == expected and asked == ["cuda:1"]  # the run's GPU, not the current one
    assert speed_settings(make_cfg("precision=auto"), torch.device("cpu"))["autocast_dtype"] is None
    assert speed_settings(make_cfg("precision=bf16"), torch.device("cuda:1"))["autocast_dtype"] == torch.bfloat16


def test_a_numbered_gpu_becomes_the_current_device(monkeypatch):
    from flipout_repro.training.build import resolve_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(str(d)))
    assert resolve_device("cuda:1") == torch.device("cuda:1") and chosen == ["cuda:1"]
    assert resolve_device("cpu") == torch.device("cpu") and chosen == ["cuda:1"]
