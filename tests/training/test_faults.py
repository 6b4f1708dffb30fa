"""Never lose a run: SIGKILL and SIGTERM mid-epoch resume exactly; locks; divergence; bad checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import REPO, run_cli, run_folder
from flipout_repro.rundir import RunLock

pytestmark = pytest.mark.slow  # every test here starts flipout-train in a subprocess

# 250 steps an epoch, so a signal reliably lands in the middle of one
ARGS = ["experiment=quickstart", "progress=false", "device=cpu", "method=flipout", "sparsity=0.75",
        "epochs=4", "batch_size=16", "optim.lr=0.01"]


def start(results_dir):
    return subprocess.Popen([sys.executable, "-m", "flipout_repro.cli", *ARGS, f"results_dir={results_dir}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def wait_for(proc, text):  # no wall-clock limit: a loaded machine is slow, not wrong
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return
    proc.kill()
    raise AssertionError(f"never saw {text!r}:\n" + "".join(lines[-20:]))


def final_weights(results_dir):
    [summary] = list(results_dir.glob("runs/**/summary.json"))
    ck = torch.load(summary.parent / "checkpoint.pt", weights_only=True)
    return ck["model"], json.loads(summary.read_text()), summary.parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run to compare against."""
    root = tmp_path_factory.mktemp("uninterrupted")
    r = run_cli(*ARGS, f"results_dir={root}")
    assert r.returncode == 0, r.stderr[-2000:]
    return final_weights(root)


def assert_same_run(root, reference):
    weights, summary, run = final_weights(root)
    ref_weights, ref_summary, _ = reference
    for k in ref_weights:
        assert torch.equal(weights[k], ref_weights[k]), k
    assert summary["final_test_acc"] == ref_summary["final_test_acc"]
    assert summary["curve"] == ref_summary["curve"]
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["type"] == "epoch"]
    assert epochs == [1, 2, 3, 4]  # no record lost, none doubled


def interrupt(results_dir, after_line, sig):
    """Start a run, wait for ``after_line``, then half a second into the next epoch send ``sig``."""
    proc = start(results_dir)
    wait_for(proc, after_line)
    time.sleep(0.5)
    proc.send_signal(sig)
    return proc


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_equals_an_uninterrupted_run(tmp_path, reference):
    interrupt(tmp_path, "epoch 2/4", signal.SIGKILL).wait()
    assert not list(tmp_path.glob("runs/**/summary.json"))
    r = run_cli(*ARGS, f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stderr + r.stdout
    assert_same_run(tmp_path, reference)


@pytest.mark.slow
def test_sigterm_checkpoints_mid_epoch_and_resumes_exactly(tmp_path, reference):
    proc = interrupt(tmp_path, "epoch 1/4", signal.SIGTERM)
    out, _ = proc.communicate()
    assert proc.returncode == 143, out[-2000:]
    assert "run the same command again to resume" in out
    [ck_path] = list(tmp_path.glob("runs/**/checkpoint.pt"))
    state = torch.load(ck_path, weights_only=True)["state"]
    assert state["epoch"] >= 1 and 0 < state["batch"] < 250 and state["order"] is not None
    r = run_cli(*ARGS, f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_run(tmp_path, reference)


@pytest.mark.slow
def test_ctrl_c_exits_130_says_interrupted_and_the_resume_names_the_same_step(tmp_path, reference):
    """SIGINT is the user's Ctrl-C: exit code 130 and ``interrupted``, not an error (SIGTERM stays 143);
    the stop and the resume name the same position in the same words."""
    proc = interrupt(tmp_path, "epoch 1/4", signal.SIGINT)
    out, _ = proc.communicate()
    assert proc.returncode == 130, out[-2000:]
    [line] = [x for x in out.splitlines() if x.startswith("flipout-train:")]
    assert line.startswith("flipout-train: interrupted by SIGINT: stopped after step ") and "error" not in out.lower()
    where = line.split("stopped after ")[1].split(":")[0]  # "step 300 (epoch 2, batch 50)"
    state = torch.load(next(tmp_path.glob("runs/**/checkpoint.pt")), weights_only=True)["state"]
    assert where == f"step {state['step']} (epoch {state['epoch'] + 1}, batch {state['batch']})"
    r = run_cli(*ARGS, f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"after {where}" in r.stderr + r.stdout
    assert_same_run(tmp_path, reference)


# What submitit (the SLURM launcher) does in a job: a Python handler for its time-limit/pre-emption
# signal (USR2) that requeues the job and exits on the spot.
FAKE_SUBMITIT = """
import os, runpy, signal, sys
def requeue(signum, frame):
    with open(os.environ["REQUEUED"], "w") as fh:
        fh.write(signal.Signals(signum).name)
    sys.exit(-1)
signal.signal(signal.SIGUSR2, requeue)
sys.argv = ["flipout-train", *sys.argv[1:]]
runpy.run_module("flipout_repro.cli", run_name="__main__")
"""


@pytest.mark.slow
def test_slurm_time_limit_signal_checkpoints_the_step_before_submitit_requeues(tmp_path, reference):
    marker = tmp_path / "requeued"
    proc = subprocess.Popen([sys.executable, "-c", FAKE_SUBMITIT, *ARGS, f"results_dir={tmp_path}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", REQUEUED=str(marker)))
    wait_for(proc, "epoch 1/4")
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR2)
    out, _ = proc.communicate()
    assert marker.read_text() == "SIGUSR2", out[-2000:]  # the launcher's handler still ran: requeued
    assert "received SIGUSR2: checkpointing after this step" in out and "handing SIGUSR2 on" in out
    [ck_path] = list(tmp_path.glob("runs/**/checkpoint.pt"))
    state = torch.load(ck_path, weights_only=True)["state"]
    assert state["epoch"] >= 1 and 0 < state["batch"] < 250  # mid-epoch, not the end of epoch 1
    r = run_cli(*ARGS, f"results_dir={tmp_path}")  # the requeued job
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_run(tmp_path, reference)


def test_a_locked_run_fails_at_once_and_a_sweep_skips_it(tmp_path):
    from helpers import make_cfg

    args = ["experiment=quickstart", "progress=false", "device=cpu", "epochs=8", "sparsity=0.99", f"results_dir={tmp_path}"]
    cfg = make_cfg(*args)
    run = run_folder(cfg)
    with RunLock(run):
        r = run_cli(*args)
        assert r.returncode == 4 and "is in use by pid" in r.stderr
        r = run_cli("-m", *args, "seed=0,1")
        assert r.returncode == 5 and "job failed (exit code 4)" in r.stderr + r.stdout  # listed at the end
    assert not run.summary.exists()
    assert (run.path.parent / "seed_1" / "summary.json").exists()  # the other job of the sweep ran
    with RunLock(run):
        with pytest.raises(Exception, match="is in use"):
            with RunLock(run):
                pass


def test_divergence_is_recorded_and_the_sweep_goes_on(tmp_path):
    args = ["experiment=quickstart", "progress=false", "device=cpu", "epochs=8", "sparsity=0.99", f"results_dir={tmp_path}"]
    r = run_cli(*args, "optim.lr=1e6")
    assert r.returncode == 3 and "training diverged in epoch 1" in r.stderr
    [path] = list(tmp_path.glob("runs/**/summary.json"))
    failed = json.loads(path.read_text())
    assert failed["status"] == "failed" and "lower optim.lr" in failed["error"]
    r = run_cli(*args, "optim.lr=1e6")  # the same command again: skipped, and told how to retry
    assert r.returncode == 0 and "resume=false starts it over" in r.stdout + r.stderr
    r = run_cli(*args, "optim.lr=1e6", "resume=false")  # trained again (and diverges again)
    assert r.returncode == 3 and "training diverged in epoch 1" in r.stderr
    r = run_cli("-m", *args, "optim.lr=1e6,0.05", "method=global_magnitude")
    assert r.returncode == 5 and "1 of 2 jobs of the sweep did not finish" in r.stderr, r.stderr[-2000:]
    statuses = sorted(json.loads(p.read_text())["status"] for p in tmp_path.glob("runs/*/global_magnitude/**/summary.json"))
    assert statuses == ["completed", "failed"]
    r = run_cli("-m", *args, "optim.lr=1e6,0.05", "method=global_magnitude")  # again: both skipped as finished
    assert r.returncode == 5 and "1 of 2 jobs of the sweep did not finish" in r.stderr  # the diverged one
    assert "recorded earlier" in r.stderr and "resume=false trains it again" in r.stderr


def test_truncated_or_foreign_checkpoint_gets_a_clear_error(tmp_path):
    args = ["experiment=quickstart", "progress=false", "device=cpu", "epochs=8", "sparsity=0.99", f"results_dir={tmp_path}"]
    assert run_cli(*args).returncode == 0
    [summary] = list(tmp_path.glob("runs/**/summary.json"))
    ck = summary.parent / "checkpoint.pt"
    summary.unlink()
    ck.write_bytes(ck.read_bytes()[:1000])
    r = run_cli(*args)
    assert r.returncode == 2
    assert "cannot be read" in r.stderr and "delete it, or pass resume=false" in r.stderr
    assert "Traceback" not in r.stderr
    torch.save({"weights": torch.zeros(3)}, ck)
    r = run_cli(*args)
    assert r.returncode == 2 and "is not a flipout-repro checkpoint" in r.stderr
    r = run_cli(*args, "resume=false")
    assert r.returncode == 0 and summary.exists()


@pytest.mark.slow
def test_a_checkpoint_from_another_kind_of_device_resumes(tmp_path):
    """A run preempted on a GPU node may be resumed where no GPU is visible (device is not in the run
    hash): its data generator state (16 bytes on CUDA) cannot go into a CPU generator, and the run goes
    on with a warning instead of asking to delete the checkpoint."""
    proc = interrupt(tmp_path, "epoch 1/4", signal.SIGTERM)
    proc.communicate()
    assert proc.returncode == 143
    [ck_path] = list(tmp_path.glob("runs/**/checkpoint.pt"))
    ck = torch.load(ck_path, weights_only=True)
    assert ck["state"]["epoch"] < 4 and ck["state"]["batch"] > 0  # stopped mid-run: there is training left
    ck["generator"] = torch.arange(16, dtype=torch.uint8)  # what a CUDA generator's get_state() holds
    torch.save(ck, ck_path)
    r = run_cli(*ARGS, f"results_dir={tmp_path}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-2000:]
    assert "was written on another kind of device" in out and "delete it" not in out
    [summary] = list(tmp_path.glob("runs/**/summary.json"))
    epochs = [json.loads(x)["epoch"] for x in (summary.parent / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["type"] == "epoch"]
    assert epochs == [1, 2, 3, 4]  # trained on from the checkpoint to the end
    assert json.loads(summary.read_text())["final_test_acc"] > 50


def test_gpu_rng_state_follows_the_training_device(monkeypatch):
    """Only the training GPU's stream is saved, and it is restored onto the GPU the job resumes on, also
    from a checkpoint that held one state per visible GPU; no GPU is needed to check the bookkeeping."""
    from flipout_repro.training.checkpoint import rng_states, set_rng_states

    states = {0: torch.tensor([10]), 1: torch.tensor([11]), 2: torch.tensor([12])}
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: states[torch.device(device).index])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((int(s), str(device))))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    saved = rng_states(torch.device("cuda:2"))
    assert [int(s) for s in saved["cuda"]] == [12]
    set_rng_states(saved, torch.device("cuda:0"))  # resumed on another GPU: the same stream goes on there
    set_rng_states(rng_states(torch.device("cpu")), torch.device("cpu"))  # CPU runs keep no GPU state
    old = dict(saved, cuda=[states[0], states[1], states[2]])  # the older format: every visible GPU
    set_rng_states(old, torch.device("cuda:1"))
    set_rng_states(old, torch.device("cuda:5"))  # fewer GPUs were visible when it was saved: no crash
    assert restored == [(12, "cuda:0"), (11, "cuda:1"), (12, "cuda:5")]
    assert rng_states(torch.device("cpu"))["cuda"] == []


@pytest.mark.parametrize("preempt", ["USR2", "TERM"])
def test_preemption_signal_is_handed_on_after_the_checkpoint_or_after_the_run(monkeypatch, preempt):
    """stop_on_signals with a launcher's Python handler on the pre-emption signal (submitit's USR2, or
    TERM via SUBMITIT_PREEMPT_SIGNAL): the launcher's handler runs after the checkpoint when training
    stops, is handed to the caller when training had already ended, and is put back either way."""
    from types import SimpleNamespace

    from flipout_repro.training.signals import stop_on_signals
    from flipout_repro.training.trainer import TrainingInterrupted

    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", preempt)
    sig = getattr(signal, "SIG" + preempt)
    calls = []

    def launcher(signum, frame):
        calls.append(signum)

    old = signal.signal(sig, launcher)
    try:
        trainer = SimpleNamespace(stop_requested=False)
        with pytest.raises(TrainingInterrupted):
            with stop_on_signals(trainer):
                os.kill(os.getpid(), sig)
                assert trainer.stop_requested and calls == []  # deferred: the step is finished first
                raise TrainingInterrupted("checkpoint written")
        assert calls == [sig] and signal.getsignal(sig) is launcher

        trainer = SimpleNamespace(stop_requested=False)
        with stop_on_signals(trainer) as pending:  # the signal arrives after the last step
            os.kill(os.getpid(), sig)
        assert calls == [sig] and len(pending) == 1 and signal.getsignal(sig) is launcher
        pending.pop()()  # _train does this once summary.json is written
        assert calls == [sig, sig]
    finally:
        signal.signal(sig, old)
