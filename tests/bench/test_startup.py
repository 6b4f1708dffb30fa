"""A run imports nothing it does not need before its first step, writes the same outputs at its
end, and ``flipout-bench --startup`` breaks a whole process down by phase (correctness only, no timing)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flipout_repro.cli.bench import main as bench_main
from flipout_repro.training.phases import ENV
from flipout_repro.bench.startup import PHASES, format_startup, startup_bench

from helpers import REPO

QUICK = ["experiment=quickstart", "method=flipout", "device=cpu", "epochs=2", "sparsity=0.5"]
#: a finished run folder's files (tb/ holds the event files of the training and of the run's end)
RUN_FILES = {"checkpoint.pt", "command.txt", "config.yaml", "curve.csv", "curve.pdf", "curve.png",
             "layer_sparsity.pdf", "layer_sparsity.png", "masks.pt", "metrics.jsonl", "model.pt", "run.log",
             "summary.json", "tb"}
SUMMARY_KEYS = {
    "achieved_sparsity", "best_test_acc", "collapsed_layers", "config", "curve", "dataset", "device",
    "effective_sparsity", "epochs", "format",
    "final_test_acc", "final_test_loss", "final_train_acc", "git_sha", "hash", "layer_figure", "layers",
    "macs_dense", "macs_sparse", "method", "model", "model_size", "nonzero", "params_nonzero", "params_total",
    "precision", "prunable", "run_dir", "seed", "sparsity_is_outcome", "status", "target_sparsity",
    "train_macs", "train_macs_dense", "train_macs_fraction", "train_macs_fraction_own", "versions", "wall_time_s"}


def test_the_quickstart_imports_no_heavy_module_before_its_first_step_and_writes_every_output(tmp_path):
    marks_file = tmp_path / "phases.jsonl"
    env = dict(os.environ, **{ENV: str(marks_file)})
    r = subprocess.run([sys.executable, "-m", "flipout_repro.cli", *QUICK, f"results_dir={tmp_path}/results",
                        "progress=false"], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    marks = [json.loads(line) for line in marks_file.read_text().splitlines()]
    assert [m["phase"] for m in marks] == ["cli", "job", "imported", "data", "built", "train_start",
                                           "first_step", "train_end", "done"]
    times = [m["t"] for m in marks]
    assert times == sorted(times)
    at = {m["phase"]: set(m["modules"]) for m in marks}
    heavy = {"torchvision", "matplotlib", "matplotlib.pyplot", "PIL", "pandas"}
    assert not at["first_step"] & heavy, at["first_step"]
    assert "matplotlib" in at["done"] and "matplotlib.pyplot" not in at["done"]  # figures drawn, without pyplot
    run = next((tmp_path / "results" / "runs").glob("**/summary.json")).parent
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert len(list((run / "tb").iterdir())) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS and summary["layer_figure"] == "layer_sparsity.png"
    assert summary["status"] == "completed" and summary["versions"]["torchvision"]  # read without importing it
    for png in ("curve.png", "layer_sparsity.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flipout_bench_startup_prints_every_phase_and_appends_its_result(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    bench_main(["--startup", "--runs", "1", "--overrides", "experiment=quickstart", "method=dense", "epochs=1",
                "device=cpu", "--against", f"{sys.executable} -c pass", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    for label, _, _ in PHASES:
        assert label in out
    assert "fixed cost" in out and "whole process" in out and "--against" in out
    assert "import torch alone" in out and "beyond it" in out
    [result] = json.loads((tmp_path / "startup.json").read_text())
    run = result["runs"][0]
    assert set(run["phases_s"]) == {label for label, _, _ in PHASES}
    assert all(v >= 0 for v in run["phases_s"].values())
    assert abs(sum(run["phases_s"].values()) - run["total_s"]) < 1e-6  # the phases tile the whole process
    assert run["fixed_s"] < run["total_s"] and len(result["against_s"]) == 1
    # the floor: a fresh interpreter importing torch; what is left of the fixed cost is the package's own
    assert 0 < run["torch_import_s"] and run["fixed_beyond_torch_s"] == run["fixed_s"] - run["torch_import_s"]
    assert not set(run["modules_at_first_step"]) & {"torchvision", "matplotlib"}
    assert format_startup(result).splitlines()[0].startswith("flipout-train experiment=quickstart method=dense")


def test_marks_are_off_without_the_variable(tmp_path, monkeypatch):
    from flipout_repro.training import phases

    monkeypatch.delenv(ENV, raising=False)
    phases.mark("cli")  # nothing to write to, nothing written
    monkeypatch.setenv(ENV, str(tmp_path / "m.jsonl"))
    phases.mark("cli")
    [rec] = [json.loads(x) for x in Path(tmp_path / "m.jsonl").read_text().splitlines()]
    assert rec["phase"] == "cli" and isinstance(rec["t"], float) and isinstance(rec["modules"], list)


def test_bad_runs_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match=r"--runs=0 must be >= 1: e.g. --runs 3"):
        startup_bench(["experiment=quickstart"], runs=0)


def test_sweep_marks_split_into_jobs_with_hand_computed_fixed_costs():
    """A sweep process's marks: the cli mark, then each job's from its own ``job`` mark on."""
    from flipout_repro.bench.startup import _job_marks

    marks = [{"phase": p, "t": t} for p, t in [
        ("cli", 0.1), ("job", 1.5), ("imported", 1.6), ("first_step", 2.0), ("train_end", 9.0), ("done", 10.0),
        ("job", 10.2), ("imported", 10.25), ("first_step", 10.5), ("train_end", 17.5), ("done", 18.1)]]
    jobs = _job_marks(marks)
    assert [sorted(j) for j in jobs] == [["done", "first_step", "imported", "job", "train_end"]] * 2
    assert jobs[1]["first_step"] - jobs[0]["done"] + jobs[1]["done"] - jobs[1]["train_end"] == pytest.approx(1.1)


@pytest.mark.slow
def test_startup_bench_times_a_sweep_and_each_further_jobs_fixed_cost(capsys):
    result = startup_bench(["experiment=quickstart", "method=dense", "device=cpu", "epochs=1", "seed=5"], runs=1,
                           sweep_jobs=2)
    sweep = result["sweep"]
    assert sweep["jobs"] == 2 and len(sweep["per_job"]) == 2 and sweep["exit_s"] >= 0
    assert all(j["fixed_s"] > 0 and j["training_s"] >= 0 for j in sweep["per_job"])
    assert sum(j["fixed_s"] + j["training_s"] for j in sweep["per_job"]) + sweep["exit_s"] == pytest.approx(
        sweep["total_s"])  # the jobs and the exit tile the whole process
    assert "one sweep process of 2 jobs (-m seed=0..1)" in format_startup(result)


def test_a_sweep_of_one_job_is_refused():
    with pytest.raises(ValueError, match=r"--sweep-jobs=1 must be 0 \(no sweep\) or >= 2: e.g. --sweep-jobs 3"):
        startup_bench(["experiment=quickstart"], sweep_jobs=1)
