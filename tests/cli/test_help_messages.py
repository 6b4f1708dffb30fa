"""flipout-train's own --help and --version, unknown keys that name the key meant, and every failure
printed once, on all five entry points."""
import dataclasses
import signal
import sys

import pytest

from helpers import run_cli
from flipout_repro import __version__
from flipout_repro.config import schema
from flipout_repro.cli.failures import COLLAPSED, INTERRUPTED, INTERRUPTED_BY_USER, exit_code
from flipout_repro.training.collapse import LayerCollapsed
from flipout_repro.training.trainer import TrainingInterrupted

QUICK = ["experiment=quickstart", "progress=false", "device=cpu"]


def test_help_is_the_tools_own():
    r = run_cli("--help")
    assert r.returncode == 0
    out = r.stdout
    assert "powered by Hydra" not in out and out.startswith("flipout-train: train one pruning run")
    assert "method: control, dense, flipout, flipout_no_noise, force" in out  # Hydra's $APP_CONFIG_GROUPS
    assert "experiment: airbench94, airbench95, airbench_quickstart, densenet121_imagenette" in out and "schedule: cubic, none, one_shot, periodic" in out
    assert out.count("\n  flipout-train ") == 4  # the examples: quickstart, paper, sweep, dynamic
    keys = out.split("== Top-level keys")[1].split("== Options")[0]
    for f in dataclasses.fields(schema.RunConfig):  # every top-level key of the schema, one line each
        assert f"\n  {f.name}" in keys or f" {f.name}.*" in keys, f.name
    assert "130 interrupted" in out and "6 stopped at a layer collapse" in out


def test_version_is_the_tools_own():
    r = run_cli("--version")
    assert r.returncode == 0
    assert r.stdout.startswith(f"flipout-repro {__version__} (torch ") and "Hydra" not in r.stdout


@pytest.mark.parametrize("arg, meant", [("lr=0.1", "optim.lr"), ("+lr=0.1", "optim.lr"),
                                        ("sparsty=0.5", "sparsity"), ("optim.lrr=0.1", "optim.lr"),
                                        ("learning_rate=0.01", "optim.lr"), ("wd=0.01", "optim.weight_decay")])
def test_an_unknown_key_names_the_key_meant_once(tmp_path, arg, meant):
    r = run_cli(*QUICK, f"results_dir={tmp_path}", arg)
    key, value = arg.lstrip("+").split("=")
    line = f"{key}={value} is not a config key: did you mean {meant}"
    assert r.returncode == 2, r.stderr[-2000:]
    assert (r.stdout + r.stderr).count(line) == 1 and f"flipout-train: error: {line}" in r.stderr
    assert "+lr" not in r.stdout + r.stderr  # not Hydra's "To append to your config use +lr=0.1"
    assert not (tmp_path / "runs").exists()


def test_a_bad_value_is_printed_once(tmp_path):
    r = run_cli(*QUICK, f"results_dir={tmp_path}", "sparsity=99.6")
    text = "sparsity=99.6 must be in [0, 1): did you mean 0.996?"
    assert r.returncode == 2 and (r.stdout + r.stderr).count(text) == 1
    assert r.stderr.strip() == f"flipout-train: error: {text}"


@pytest.mark.parametrize("module, func, argv, code, text", [
    ("report", "main", ["--results-dir", "/nonexistent/x"], 2, "has no runs/ folder"),
    ("finished_run", "quantize_main", ["/nonexistent/x"], 2, "/nonexistent/x is not a folder"),
    ("finished_run", "export_main", ["/nonexistent/x"], 2, "/nonexistent/x is not a folder"),
    ("bench", "main", ["--model", "nope"], 2, "Could not find 'model/nope'"),
])
def test_the_other_entry_points_print_a_failure_once(module, func, argv, code, text, capsys):
    entry = getattr(__import__(f"flipout_repro.cli.{module}", fromlist=[func]), func)
    with pytest.raises(SystemExit) as exc:
        entry(argv)
    out = capsys.readouterr()
    assert exc.value.code == code
    assert (out.out + out.err).count(text) == 1 and out.err.count("error:") == 1


def test_exit_codes_of_a_stop():
    """Ctrl-C (SIGINT) 130, SIGTERM (a cluster's pre-emption) 143, a layer collapse with on_collapse=stop 6."""
    for sig, code in ((signal.SIGINT, INTERRUPTED_BY_USER), (signal.SIGTERM, INTERRUPTED), (None, INTERRUPTED)):
        exc = TrainingInterrupted("stopped")
        exc.signal = sig
        assert exit_code(exc) == code
    assert (INTERRUPTED_BY_USER, INTERRUPTED) == (130, 143)
    assert exit_code(LayerCollapsed("x", ["fc3.weight"], 0, 0)) == COLLAPSED == 6


def test_cfg_job_shows_the_milestones_as_epochs_of_the_run():
    r = run_cli("--cfg", "job", "experiment=quickstart")  # 150 and 250 of 350, in a 40-epoch run
    assert r.returncode == 0
    assert "milestones_of: 350" in r.stdout
    assert "# optim.milestones as epochs of this run (epochs=40, lr x 0.1 at each): [17, 29]" in r.stdout


def test_ctrl_c_before_training_exits_130_and_writes_no_run(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the run is being set up (here: while the model is built, after the config and the data)
    is the user's stop too: exit code 130, one ``interrupted`` line that says how to go on, and no run
    folder, since nothing had been trained."""
    from flipout_repro import run as run_module
    from flipout_repro.cli import train

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "build", ctrl_c)
    monkeypatch.setattr(sys, "argv", ["flipout-train", *QUICK, f"results_dir={tmp_path}", "method=dense", "epochs=1"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        train.main()
    assert stop.value.code == INTERRUPTED_BY_USER == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("flipout-train: interrupted by SIGINT: Ctrl-C outside the training loop: the same command"
                       " starts or resumes the run")
    assert not (tmp_path / "runs").exists()
