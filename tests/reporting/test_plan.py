"""flipout-report --plan (what make paper-runs prints first): the runs of the sweep presets, done and to do,
and the hours of those to do from flipout-bench's measured throughput, or a line saying there is none."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import REPO
from flipout_repro.data import TRAIN_IMAGES
from flipout_repro.reporting.plan import format_plan, make_plan, measurements
from flipout_repro.reporting.sweep_status import sweep_jobs

LENET = {"model": "lenet300_100", "device": "cuda:0", "device_name": "NVIDIA H100", "precision": "fp32",
         "batch_size": 128, "methods": {"dense": {"images_per_s": 40_000.0}, "flipout": {"images_per_s": 20_000.0},
                                        "global_magnitude": {"images_per_s": 32_000.0}}}


def _report(*args: str) -> subprocess.CompletedProcess:
    """flipout-report in a fresh process, as make paper-runs starts it."""
    return subprocess.run([sys.executable, "-c", "from flipout_repro.cli.report import main; main()", *args],
                          cwd=REPO, capture_output=True, text=True)


def _finish(job) -> None:
    job.run_dir.mkdir(parents=True)
    (job.run_dir / "summary.json").write_text(json.dumps({"status": "completed"}))


def test_the_estimate_is_epochs_of_training_images_at_the_measured_rate(tmp_path):
    jobs = sweep_jobs("tiny", tmp_path)  # flipout, global_magnitude, random x 0.75, 0.9375 x seeds 0, 1; 8 epochs
    _finish(next(j for j in jobs if j.method == "global_magnitude"))
    plan = make_plan(sweep_jobs("tiny", tmp_path), [{**LENET, "source": "cuda.json"}], TRAIN_IMAGES)
    assert (plan.runs, plan.done, plan.todo) == (12, 1, 11)
    # 8 epochs of the subset's 4,000 training images: flipout 4 runs at 20,000/s = 4 x 1.6 s; global_magnitude
    # 3 runs at 32,000/s = 3 x 1.0 s; random is not measured: the slowest method measured, 4 x 1.6 s
    assert plan.seconds == pytest.approx(4 * 1.6 + 3 * 1.0 + 4 * 1.6)
    text = format_plan(plan, tmp_path / "bench")
    assert text.splitlines()[0] == "12 runs in 1 sweep presets: 1 done, 11 to do"
    assert "tiny: 12 runs, 11 to do, about 0.0044 GPU-hours" in text
    assert "for the 11 runs to do with a measured model" in text and "NVIDIA H100 (fp32) in cuda.json" in text


def test_the_newest_cuda_measurement_at_the_runs_precision_wins(tmp_path):
    (tmp_path / "bench").mkdir()
    cpu = {**LENET, "device": "cpu", "device_name": "x86_64", "methods": {"flipout": {"images_per_s": 10.0}}}
    old = {**LENET, "methods": {"flipout": {"images_per_s": 1_000.0}}}
    bf16 = {**LENET, "precision": "bf16", "methods": {"flipout": {"images_per_s": 99_000.0}}}
    (tmp_path / "bench" / "cuda.json").write_text(json.dumps([old, LENET, bf16]))
    (tmp_path / "bench" / "cpu.json").write_text(json.dumps([cpu]))
    (tmp_path / "bench" / "startup.json").write_text(json.dumps([{"runs": 3, "phases": {}}]))  # not a throughput
    records = measurements(tmp_path / "bench")
    assert len(records) == 4
    flipout = [j for j in sweep_jobs("tiny", tmp_path) if j.method == "flipout"]
    assert make_plan(flipout, records, TRAIN_IMAGES).seconds == pytest.approx(4 * 8 * 4000 / 20_000)


def test_plan_without_a_measurement_counts_runs_and_says_it_has_no_estimate(tmp_path):
    (tmp_path / "runs").mkdir()
    r = _report("--plan", "--results-dir", str(tmp_path), "--sweeps", "tiny,paper_vgg19_dense")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "15 runs in 2 sweep presets: 0 done, 15 to do"
    assert "paper_vgg19_dense: 3 runs, 3 to do" in r.stdout
    assert f"no throughput measured yet ({tmp_path / 'bench'}/*.json holds no flipout-bench result)" in r.stdout
    assert "cannot be composed" not in r.stderr  # the presets compose in a process that trains nothing
    assert list(tmp_path.iterdir()) == [tmp_path / "runs"]  # the plan writes nothing


def test_plan_with_a_vgg19_measurement_gives_gpu_hours(tmp_path):
    (tmp_path / "bench").mkdir()
    vgg = {**LENET, "model": "vgg19", "methods": {"dense": {"images_per_s": 5_000.0}}}
    (tmp_path / "bench" / "cuda.json").write_text(json.dumps([vgg]))
    r = _report("--plan", "--results-dir", str(tmp_path), "--sweeps", "paper_vgg19_dense")
    assert r.returncode == 0, r.stderr
    # 3 dense runs x 350 epochs x 50,000 CIFAR-10 images at 5,000 images/s = 3 x 3,500 s = 2.9 hours
    assert "paper_vgg19_dense: 3 runs, 3 to do, about 2.9 GPU-hours" in r.stdout
    assert "estimate: about 2.9 GPU-hours for the 3 runs to do" in r.stdout


def test_make_paper_runs_prints_the_plan_before_any_sweep():
    r = subprocess.run(["make", "-n", "paper-runs"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("flipout-report --plan --results-dir results --sweeps paper_vgg19,paper_vgg19_snip,")
