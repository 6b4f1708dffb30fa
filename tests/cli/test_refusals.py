"""A refused command writes nothing, anywhere; a config never makes Hydra run code or write outside
results_dir; an override never relabels a run or makes two copies of a value disagree."""
import pytest

from flipout_repro.cli.overrides import check_command_line
from helpers import run_cli

QUICK = ("experiment=quickstart", "epochs=2", "sparsity=0.5", "progress=false")


def files_under(root):
    return sorted(p for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("bad, says", [
    ("sparsity=2", "sparsity=2.0 must be in [0, 1)"),
    ("dataset=cifar10", "CIFAR10 not found"),  # found when the data loads, after Hydra made its folder
])
def test_a_refused_run_leaves_nothing_behind(tmp_path, bad, says):
    results = tmp_path / "results"
    r = run_cli(*QUICK, f"results_dir={results}", f"dataset.root={tmp_path / 'nodata'}", bad, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert files_under(results) == [] and not results.exists()
    assert files_under(tmp_path / "nodata") == []


def test_an_empty_results_dir_is_refused_before_hydra_writes_anywhere(tmp_path):
    r = run_cli(*QUICK, "results_dir=", "sparsity=2", cwd=tmp_path)
    assert r.returncode == 2 and "results_dir='' is empty" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_results_dir_that_cannot_be_created_is_one_line(tmp_path):
    r = run_cli(*QUICK, "results_dir=/proc/flipout-repro-test", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "cannot be created" in r.stderr and "Traceback" not in r.stderr


def refused(args, capsys):
    with pytest.raises(SystemExit) as exc:
        check_command_line("flipout-train", list(args))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("override, says", [
    ("+hydra.callbacks.x={_target_:shutil.copyfile,src:a,dst:b}", "hydra.callbacks.x._target_='shutil.copyfile'"),
    ("hydra.launcher._target_=os.system", "hydra.launcher._target_='os.system'"),
    ("+hydra.job_logging.handlers.x={class:shutil.Error}", "hydra.job_logging.handlers.x.class='shutil.Error'"),
    ("hydra.job_logging.handlers.file.filename=/tmp/elsewhere.log", "lies outside results_dir"),
    ("hydra.run.dir=/tmp/elsewhere", "hydra.run.dir='/tmp/elsewhere' lies outside results_dir"),
    ("hydra.sweep.dir=results/../..", "hydra.sweep.dir='results/../..' lies outside results_dir"),
])
def test_a_command_line_that_would_make_hydra_run_code_or_write_elsewhere_is_refused(override, says, capsys):
    assert says in refused([*QUICK, override], capsys)


def test_a_preset_of_the_users_own_that_names_code_is_refused_in_a_run_and_in_a_sweep(tmp_path, capsys):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /experiment/quickstart\nepochs: 1\n")
    (tmp_path / "experiment" / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    evil:\n      _target_: shutil.copyfile\n"
        "      src: a\n      dst: b\n")
    check_command_line("flipout-train", ["--config-dir", str(tmp_path), "experiment=mine"])  # its own preset: fine
    assert "hydra.callbacks.evil._target_='shutil.copyfile'" in refused(
        ["--config-dir", str(tmp_path), "experiment=evil"], capsys)
    assert "hydra.callbacks.evil._target_" in refused(
        ["-m", "--config-dir", str(tmp_path), "experiment=mine,evil", "seed=0,1"], capsys)
    (tmp_path / "experiment" / "factory.yaml").write_text(  # logging's own way to call anything: "()"
        "# @package _global_\nhydra:\n  job_logging:\n    filters:\n      x:\n        (): os.getcwd\n")
    assert "hydra.job_logging.filters.x.()='os.getcwd' would run code" in refused(
        ["--config-dir", str(tmp_path), "experiment=factory"], capsys)


def test_the_projects_own_launchers_and_options_pass(tmp_path):
    for args in (["-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "method=flipout,snip"],
                 ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                 [f"hydra.run.dir={tmp_path}/hydra/x", f"results_dir={tmp_path}"]):
        check_command_line("flipout-train", [*QUICK, *args])  # no SystemExit


@pytest.mark.parametrize("override, says", [
    ("method.name=flipout", "method.name='flipout' would relabel the run in its folder and every table"),
    ("model.name=vgg19", "model.name='vgg19' would relabel the run"),
    ("method.optim_weight_decay=0.1", "method.optim_weight_decay='0.1' is a copy of optim.weight_decay"),
])
def test_an_override_that_relabels_a_run_or_splits_a_copied_value_is_refused(override, says, capsys):
    assert says in refused([*QUICK, "method=str", override], capsys)
