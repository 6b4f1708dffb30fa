"""scripts/gpu_check.sh without a GPU: the script parses, --dry-run lists every step and runs nothing, the
synthetic CIFAR writer writes files the real loader reads, a run on them passes the run checks (on the
CPU, with a small model), and the summariser turns the steps' outputs into JSON and Markdown."""
import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from helpers import REPO
from flipout_repro import data as data_mod

SCRIPT = REPO / "scripts" / "gpu_check.sh"
spec = importlib.util.spec_from_file_location("gpu_check_tools", REPO / "scripts" / "gpu_check_tools.py")
tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tools)

STEPS = ["install", "gpu_visible", "cuda_tests", "synthetic_cifar_full", "airbench_dense", "airbench_flipout",
         "bench_airbench", "synthetic_cifar", "run_fp32", "check_fp32", "run_bf16", "check_bf16",
         "inference", "run_2_4", "inference_2_4", "decode_bench"] + [f"bench_{m}_{p}_{c}" for c in ("eager", "compiled") for m in ("vgg19", "resnet18")
                         for p in ("fp32", "bf16")] + ["summary"]


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_dry_run_lists_every_step_with_its_limit_and_runs_nothing(tmp_path):
    out = tmp_path / "never"
    r = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split("]")[0][1:] for line in lines] == STEPS
    assert all("(at most" in line for line in lines[:-1])
    assert "pip install -q -e .[dev]" in lines[0] and "-m cuda" in lines[2]
    assert "experiment=airbench94" in lines[4] and "seed=0,1,2,3,4" in lines[4] and "-m" in lines[4].split()
    assert "method=flipout" in lines[5] and "--experiment airbench94" in lines[6] and "rigl" in lines[6]
    assert "pattern=nm" in lines[13] and "device=cuda" in lines[13] and "results_2_4 -- --batches 1 64" in lines[14]
    assert "decode_bench.py" in lines[15] and "--device cuda" in lines[15]
    assert "precision=bf16" in lines[10] and "--compile" in lines[-2] and "--compile" not in lines[15]
    assert not out.exists()


def test_usage_is_an_error():
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_synthetic_cifar_is_real_cifar_format_and_learnable(tmp_path, no_md5):  # noqa: F811
    tools.write_cifar(tmp_path, train=50, test=20)
    d = data_mod.load("cifar10", tmp_path, False, torch.device("cpu"), [0.5] * 3, [0.25] * 3)
    assert d.train_x.shape == (50, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and int(d.train_y.max()) < 10
    means = d.train_x.float().mean(dim=(2, 3))  # per image and channel: near its class colour
    for k in d.train_y.unique():
        spread = means[d.train_y == k].std(0) if (d.train_y == k).sum() > 1 else torch.zeros(3)
        assert float(spread.max()) < 10  # noise of std 40 averaged over 1,024 pixels
    with pytest.raises(ValueError, match="multiple of 5"):
        tools.write_cifar(tmp_path / "x", train=12)


@pytest.mark.slow
def test_a_run_on_synthetic_files_passes_the_run_checks(tmp_path):
    """The GPU runs' code path on the CPU: train on the synthetic files (MD5 check bypassed), check-run."""
    tools.write_cifar(tmp_path / "data", train=500, test=100)
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check_tools.py"), "train", str(tmp_path / "data"),
                        "--", "model=lenet5", "method=flipout", "sparsity=0.75", "epochs=3", "schedule.rounding=exact",
                        "device=cpu", "progress=false", f"results_dir={tmp_path / 'res'}"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    result = tools.check_run(tmp_path / "res", 0.75)
    assert result["ok"], result["checks"]
    assert result["epochs"] == 3 and result["achieved_sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert result["final_test_acc"] > 30  # learnable: well above chance (10 %) after 3 epochs
    bad = tools.check_run(tmp_path / "res", 0.9)
    assert not bad["ok"] and not bad["checks"]["sparsity_at_target"]


def fake_outputs(out):
    (out / "bench").mkdir(parents=True)
    steps = [{"step": "install", "status": "ok", "rc": 0, "seconds": 50, "limit_s": 120},
             {"step": "bench_vgg19_fp32_compiled", "status": "timeout", "rc": 124, "seconds": 60, "limit_s": 60}]
    (out / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    methods = {m: {"step_ms": ms, "images_per_s": 128 / ms * 1e3, "ratio_to_dense": ms / 40.0}
               for m, ms in [("dense", 40.0), ("global_magnitude", 41.0), ("flipout_no_noise", 42.0), ("flipout", 44.0)]}
    (out / "bench" / "cuda.json").write_text(json.dumps([{"model": "vgg19", "precision": "bf16", "compile": False,
                                                          "device_name": "FakeGPU", "methods": methods}]))
    checks = {"completed": True, "masks_binary": True, "sparsity_at_target": True}
    (out / "run_fp32.json").write_text(json.dumps({"final_test_acc": 55.5, "achieved_sparsity": 0.75, "checks": checks,
                                                   "ok": True}))
    (out / "run_bf16.json").write_text(json.dumps({"final_test_acc": 54.0, "achieved_sparsity": 0.75, "ok": False,
                                                   "checks": checks | {"weights_finite": False}}))
    (out / "inference.json").write_text(json.dumps({"batches": {"1": {"speedup": 1.5}, "16": {"speedup": 0.8}}}))
    (out / "inference_2_4.json").write_text(json.dumps({"semi_structured": {
        "layers_2_4": ["fc1"], "dtype": "float16", "device": "FakeGPU", "batches": {"64": {"fc1": {
            "shape": [300, 784], "padded_shape": [320, 832], "dense_ms": 0.02, "semi_structured_ms": 0.016,
            "csr_ms": 0.05}}}}}))
    (out / "decode.json").write_text(json.dumps({"images": 1024, "batch_size": 128, "workers": 15,
                                                 "decode": {"workers": {"images_per_s": 2000.0},
                                                            "device": {"images_per_s": 5000.0}},
                                                 "device_over_workers_speed": 2.5}))
    (out / "cuda_tests.xml").write_text('<testsuites><testsuite tests="5" failures="1" errors="0" skipped="1">'
                                        "</testsuite></testsuites>")


def test_the_summary_of_fake_outputs(tmp_path):
    fake_outputs(tmp_path)
    r = tools.summarise(tmp_path)
    assert not r["ok"]  # a step timed out and the bf16 run failed a check
    assert r["cuda_tests"] == {"tests": 5, "failures": 1, "errors": 0, "skipped": 1, "passed": 3}
    [cell] = r["bench"]
    assert cell["images_per_s"]["dense"] == pytest.approx(3200)
    assert cell["ratio_to_dense"]["flipout"] == pytest.approx(1.1)
    assert cell["flipout_overhead"] == pytest.approx(44 / 42)
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == r
    md = (tmp_path / "gpu_check.md").read_text()
    assert "overall: NOT OK" in md and "| bench_vgg19_fp32_compiled | timeout (rc 124) | 60 | 60 |" in md
    assert "| vgg19 | bf16 | False | 3200 | 3122 | 3048 | 2909 | 1.100 | 1.048 |" in md
    assert "| fp32 | 55.50 | 0.7500 | all pass |" in md and "| bf16 | 54.00 | 0.7500 | FAILED: weights_finite |" in md
    assert r["decode"]["device_over_workers_speed"] == 2.5
    assert ("JPEG decoding (1024 images, batch 128, 15 workers): decode=workers 2000 img/s, decode=device 5000 img/s;"
            " device / workers 2.50x") in md
    assert "3 passed, 1 failed, 1 skipped" in md and "batch 1: 1.50x, batch 16: 0.80x" in md
    assert "2:4 semi-structured on FakeGPU (float16; ms per forward):" in md
    assert "| 64 | fc1 | [300, 784] ([320, 832]) | 0.0200 | 0.0160 | 0.0500 | 1.25x |" in md


def test_the_summary_of_nothing_still_writes_both_files(tmp_path):
    r = tools.summarise(tmp_path)
    assert not r["ok"] and r["bench"] == [] and r["cuda_tests"] is None
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| fp32 | - | - | no result |" in md and "2:4 semi-structured: no result" in md
    skipped = tools.semi_structured_lines({"skipped": "no Linear layer has a 2:4 mask"})
    assert skipped == ["", "2:4 semi-structured: skipped: no Linear layer has a 2:4 mask"]


def test_the_airbench_summary(tmp_path):
    for i, (method, secs, acc) in enumerate([("dense", 5.5, 93.9), ("dense", 5.2, 94.1), ("flipout", 6.6, 93.0)]):
        folder = tmp_path / "results_airbench" / "runs" / f"r{i}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"method": method, "wall_time_s": secs,
                                                         "final_test_acc": acc}))
    (tmp_path / "bench_airbench").mkdir()
    (tmp_path / "bench_airbench" / "cuda.json").write_text(json.dumps([{"device_name": "FakeGPU", "methods": {
        "dense": {"ratio_to_dense": 1.0}, "flipout": {"ratio_to_dense": 1.04}, "rigl": {"ratio_to_dense": 1.2}}}]))
    r = tools.summarise(tmp_path)["airbench"]
    assert r["dense_seconds"] == [5.5, 5.2] and r["dense_acc_mean"] == pytest.approx(94.0)
    assert r["flipout_seconds"] == [6.6] and r["step_ratio"]["rigl"] == 1.2
    md = (tmp_path / "gpu_check.md").read_text()
    assert "- dense runs: 5.50, 5.20 s; test acc 93.90, 94.10 % (mean 94.00)" in md
    assert "- step / dense: dense 1.000, flipout 1.040, rigl 1.200" in md and "under 6 s" in md
