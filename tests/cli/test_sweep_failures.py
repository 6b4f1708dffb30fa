"""End to end: a failing job of a sweep does not stop the others and the
sweep's exit code says so, with a closing list; what belongs in one line is one line."""
import errno
import sys

import pytest

from helpers import make_cfg, run_cli, run_folder
from flipout_repro.rundir import RunLock

BASE = ["experiment=quickstart", "progress=false", "device=cpu", "epochs=2", "sparsity=0.5"]


def closing_list(r):
    text = r.stderr
    return text[text.index("jobs of the sweep did not finish"):] if "did not finish" in text else ""


@pytest.mark.slow
def test_a_bad_value_in_one_job_fails_that_job_only(tmp_path):
    r = run_cli("-m", *BASE, f"results_dir={tmp_path}", "sparsity=99.6,0.5")
    assert r.returncode == 5, r.stderr[-2000:]
    assert "1 of 2 jobs of the sweep did not finish" in r.stderr
    [line] = [x for x in closing_list(r).splitlines() if x.startswith("  job ")]
    assert "sparsity=99.6" in line and line.endswith("exit code 2: sparsity=99.6 must be in [0, 1): did you mean 0.996?")
    assert [p.parts[-4] for p in tmp_path.glob("runs/**/summary.json")] == ["sparsity_0.5"]


@pytest.mark.slow
def test_a_corrupt_checkpoint_or_a_lock_fails_that_job_only(tmp_path):
    args = [*BASE, f"results_dir={tmp_path}"]
    corrupt = run_folder(make_cfg(*args, "seed=0"))
    corrupt.path.mkdir(parents=True)
    corrupt.checkpoint.write_bytes(b"PK\x03\x04 cut short")
    locked = run_folder(make_cfg(*args, "seed=2"))
    with RunLock(locked):
        r = run_cli("-m", *args, "seed=0,1,2")
    assert r.returncode == 5, r.stderr[-2000:]
    jobs = [x for x in closing_list(r).splitlines() if x.startswith("  job ")]
    assert "2 of 3 jobs of the sweep did not finish" in r.stderr and len(jobs) == 2
    assert "seed=0" in jobs[0] and "exit code 2: checkpoint /" in jobs[0] and "cannot be read" in jobs[0]
    assert "seed=2" in jobs[1] and "exit code 4:" in jobs[1] and "is in use by pid" in jobs[1]
    assert (corrupt.path.parent / "seed_1" / "summary.json").exists()
    assert r.stdout.strip().splitlines()[-1] == ("flipout-train: sweep of 3 jobs: 1 done, 0 skipped (finished"
                                                 f" before), 2 failed; next: flipout-report --results-dir {tmp_path}")
    r = run_cli("-m", *args, "seed=1,3")  # seed 1 is skipped (finished), seed 3 trains: exit code 0, no list
    assert r.returncode == 0 and "did not finish" not in r.stderr
    assert r.stdout.strip().splitlines()[-1] == ("flipout-train: sweep of 2 jobs: 1 done, 1 skipped (finished"
                                                 f" before), 0 failed; next: flipout-report --results-dir {tmp_path}")


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["resume=no"], "resume='no' must be true or false: use resume=true or resume=false"),
    (["optim.nesterov=yes"], "optim.nesterov='yes' must be true or false"),
    (["epochs=${nope}"], "epochs='${nope}' cannot be resolved: Interpolation key 'nope' not found"),
    (["method.name=../../../../x"], "method.name='../../../../x' would relabel the run"),
    (["method._target_=subprocess.run", "+method.args=[touch,{marker}]"], "method._target_='subprocess.run' is not"
                                                                          " allowed"),
    (["optim.lr=nan"], "optim.lr=nan must be a finite number"),
    (["results_dir={tmp}/file"], "is not a folder"),
    (["results_dir={tmp}/file/below"], "is not a folder ("),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    (tmp_path / "file").write_text("")
    marker = tmp_path / "ran"
    args = [a.replace("{marker}", str(marker)).replace("{tmp}", str(tmp_path)) for a in args]
    r = run_cli(*BASE, f"results_dir={tmp_path / 'results'}", *args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("flipout-train: error: ") and message in r.stderr
    assert "Traceback" not in r.stderr and not marker.exists()
    assert not (tmp_path / "results" / "runs").exists()


def test_a_full_disk_in_a_run_is_one_line(tmp_path, monkeypatch, capsys):
    """No space left on device while a run writes: one line naming it, exit code 1, no traceback."""
    import flipout_repro.run as run_module
    from flipout_repro.cli.train import main

    def full(cfg, overrides=None):
        raise OSError(errno.ENOSPC, f"no space left on device while writing {tmp_path}/x (the partial file was"
                      " removed): free some space and run the same command again")

    monkeypatch.setattr(run_module, "run", full)
    monkeypatch.setattr(sys, "argv", ["flipout-train", *BASE, f"results_dir={tmp_path}",
                                      f"hydra.run.dir={tmp_path}/hydra"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("flipout-train: error: OSError: [Errno 28] no space left on device")


def test_failures_keep_their_codes_and_a_sweep_has_its_own():
    from flipout_repro.cli import failures

    assert failures.SWEEP_FAILED == 5 and failures.exit_code(OSError(errno.ENOSPC, "x")) == failures.UNEXPECTED
