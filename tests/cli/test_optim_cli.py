"""flipout-train with optim=adamw: a bad value or a key of another optimiser is one line and exit code 2;
the quickstart trains with it end to end."""
import json

import pytest

from helpers import run_cli
from flipout_repro.rundir import load_tensors

QUICK = ["experiment=quickstart", "progress=false", "device=cpu"]


@pytest.mark.parametrize("arg, line", [
    ("optim.betas=[0.9]", "optim.betas=[0.9] must be two numbers in [0, 1): e.g. optim.betas=[0.9,0.999]"),
    ("optim.momentum=0.9", "optim.momentum=0.9 is not a key of optim=adamw: its keys: betas, eps, weight_decay,"),
])
def test_a_bad_adamw_value_or_key_is_one_line_and_exit_code_2(tmp_path, arg, line):
    results = tmp_path / "results"
    r = run_cli(*QUICK, f"results_dir={results}", "optim=adamw", arg)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith(f"flipout-train: error: {line}")
    assert not (results / "runs").exists()


@pytest.mark.slow
def test_the_quickstart_trains_with_adamw(tmp_path):
    r = run_cli(*QUICK, f"results_dir={tmp_path}", "optim=adamw", "optim.lr=0.001", "epochs=2", "sparsity=0.5")
    assert r.returncode == 0, r.stderr[-2000:]
    [path] = tmp_path.glob("runs/**/summary.json")
    s = json.loads(path.read_text())
    assert s["status"] == "completed" and s["config"]["optim"]["name"] == "adamw"
    assert s["final_test_acc"] > 50  # 10 classes: well above chance after two epochs
    state = load_tensors(path.parent / "checkpoint.pt")["optimizer"]
    assert {"exp_avg", "exp_avg_sq"} <= set(next(iter(state["state"].values())))
