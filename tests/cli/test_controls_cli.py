"""flipout-controls: the controls of every finished pruned run below a folder or of a sweep, each a run beside
its parent; what does not apply is left out, bad input is one line and exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import make_cfg
from flipout_repro.cli import controls as controls_cli
from flipout_repro.run import run

QUICK = ("experiment=lottery_quickstart", "epochs=2", "optim.milestones=[1]", "optim.milestones_of=2", "progress=false",
         "budget=global")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("controls")
    run(make_cfg(*QUICK, f"results_dir={tmp}", "method=snip", "sparsity=0.9"))
    run(make_cfg(*QUICK, f"results_dir={tmp}", "method=global_magnitude", "sparsity=0.9", "schedule=one_shot",
                 "schedule.epoch=1"))
    run(make_cfg(*QUICK, f"results_dir={tmp}", "method=dense"))
    return tmp


def test_a_dry_run_lists_the_controls_that_apply(results, capsys):
    controls_cli.main([str(results / "runs"), "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    kinds = sorted((line.split()[0], Path(line.split()[1]).parts[-4]) for line in lines)
    # the dense run has no mask to control; invert only for SNIP, which pruned at initialisation
    assert kinds == sorted([(k, "snip") for k in ("shuffle", "reinit", "random_budget", "invert")]
                           + [(k, "global_magnitude") for k in ("shuffle", "reinit", "random_budget")])
    assert not (results / "runs" / "lenet300_100-mnist5k" / "control").exists()


def test_the_controls_run_beside_their_parent_and_a_second_call_skips_them(results):
    parent = results / "runs" / "lenet300_100-mnist5k" / "global_magnitude"
    controls_cli.main([str(parent), "--kinds", "shuffle"])
    made = list((results / "runs" / "lenet300_100-mnist5k" / "control").glob("*/*/seed_0/summary.json"))
    assert len(made) == 1
    summary = json.loads(made[0].read_text())
    assert summary["control"] == "shuffle" and summary["parent"]["method"] == "global_magnitude"
    before = made[0].stat().st_mtime_ns
    controls_cli.main([str(parent), "--kinds", "shuffle"])
    assert made[0].stat().st_mtime_ns == before


@pytest.mark.parametrize("args, says", [
    (["--kinds", "swap"], "--kinds='swap' is not a control"),
    (["nowhere"], "folders='nowhere' is not a folder"),
])
def test_bad_input_is_one_line_and_exit_code_2(results, capsys, args, says, tmp_path):
    with pytest.raises(SystemExit) as stop:
        controls_cli.main([*(args if args[0] != "--kinds" else [str(results / "runs"), *args])])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and says in err and err.count("\n") == 1


def test_a_folder_without_a_pruned_run_is_one_line(results, capsys):
    with pytest.raises(SystemExit) as stop:
        controls_cli.main([str(results / "runs" / "lenet300_100-mnist5k" / "dense")])
    assert stop.value.code == 2 and "hold no finished pruned run" in capsys.readouterr().err


def test_invert_asked_of_a_run_that_pruned_during_training_is_refused(results, capsys):
    with pytest.raises(SystemExit) as stop:
        controls_cli.main([str(results / "runs" / "lenet300_100-mnist5k" / "global_magnitude"), "--kinds", "invert"])
    assert stop.value.code == 2 and "pruned at initialisation" in capsys.readouterr().err


def test_the_controls_of_a_sweeps_runs(tmp_path, capsys):
    # one job of +sweep=imp_quickstart_baselines (its identity: the preset's protocol, SNIP at 90 %, seed 0)
    run(make_cfg("experiment=lottery_quickstart", "method=snip", "budget=global", "sparsity=0.9", "seed=0",
                 "progress=false", f"results_dir={tmp_path}"))
    run(make_cfg(*QUICK, f"results_dir={tmp_path}", "method=snip", "sparsity=0.9"))  # not a job of the sweep
    controls_cli.main(["--sweep", "imp_quickstart_baselines", "--results-dir", str(tmp_path), "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in lines) == ["invert", "random_budget", "reinit", "shuffle"]
    assert len({line.split()[1] for line in lines}) == 1
