"""What a run folder's files can and cannot make a run do: a checkpoint of another run is refused with both
identities named, a planted symbolic link is never written through, a partial file of a killed write is
removed, a run that cannot reach its target sparsity is refused before training or recorded as failed."""
import json
import shutil

import pytest
import torch

from flipout_repro.config.identity import run_dir as identity_run_dir
from flipout_repro.config.precision import pin_precision
from flipout_repro.config.targets import prepare
from flipout_repro.errors import ConfigError
from flipout_repro.run import SparsityNotReached, run
from flipout_repro.rundir import DamagedRun
from flipout_repro.training.checkpoint import CheckpointError
from flipout_repro.training.trainer import Trainer, TrainingInterrupted
from helpers import stop_after


def interrupted(cfg, monkeypatch):
    """Run ``cfg`` until a stop after its third step (a checkpoint is written, as at SIGTERM)."""
    original = stop_after(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted):
        run(cfg)
    monkeypatch.setattr(Trainer, "step", original)


def folder_of(cfg):
    prepared, _ = prepare(cfg)
    return identity_run_dir(pin_precision(prepared, torch.device("cpu")))


def test_a_checkpoint_copied_from_another_run_is_refused_naming_both(quick_cfg, monkeypatch):
    donor, victim = quick_cfg("epochs=6", "sparsity=0.75"), quick_cfg("epochs=2", "sparsity=0.5")
    for cfg in (donor, victim):
        interrupted(cfg, monkeypatch)
    d, v = folder_of(donor), folder_of(victim)
    shutil.copyfile(d.checkpoint, v.checkpoint)
    with pytest.raises(CheckpointError) as err:
        run(victim)
    text = str(err.value)
    assert "was written by another run" in text
    assert f"{d.path.parent.name}, seed 0" in text and f"{v.path.parent.name}, seed 0" in text
    assert "6 epochs" in text and "2 epochs" in text, text
    assert not v.finished()


@pytest.mark.parametrize("planted", ["run.log", "command.txt", "metrics.jsonl", "tb"])
def test_a_symlink_planted_in_a_run_folder_is_never_written_through(quick_cfg, monkeypatch, tmp_path, planted):
    cfg = quick_cfg("epochs=2", "sparsity=0.5")
    interrupted(cfg, monkeypatch)
    folder = folder_of(cfg)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    victim = outside / "victim"
    if planted == "tb":
        victim.mkdir()
        shutil.rmtree(folder.tb)
    else:
        victim.write_text("precious")
        (folder.path / planted).unlink(missing_ok=True)
    (folder.path / planted).symlink_to(victim)
    try:
        run(cfg)  # resumes: a file it rewrites whole (metrics.jsonl, cut back to the checkpoint) replaces the link
        assert planted == "metrics.jsonl" and not (folder.path / planted).is_symlink()
    except DamagedRun as exc:
        assert f"{planted} is a symbolic link" in str(exc)  # one it appends to is refused
    assert (list(victim.iterdir()) == []) if planted == "tb" else victim.read_text() == "precious"


def test_a_link_on_the_way_to_the_run_folder_is_refused_before_anything_is_written(quick_cfg, tmp_path):
    cfg = quick_cfg("epochs=2", "sparsity=0.5")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    (tmp_path / "runs").symlink_to(outside)
    with pytest.raises(DamagedRun, match="runs is a symbolic link"):
        run(cfg)
    assert list(outside.iterdir()) == []


def test_the_partial_file_of_a_killed_write_is_removed_at_the_next_start(quick_cfg, monkeypatch):
    cfg = quick_cfg("epochs=2", "sparsity=0.5")
    interrupted(cfg, monkeypatch)
    folder = folder_of(cfg)
    partial = folder.path / ".checkpoint.pt.0123456789ab.tmp"
    partial.write_bytes(b"half a checkpoint")
    run(cfg)
    assert not partial.exists() and folder.finished()


def test_a_method_that_prunes_at_events_with_a_schedule_of_none_is_refused_before_training(quick_cfg, tmp_path):
    cfg = quick_cfg("method=rigl", "schedule=none", "sparsity=0.9", "epochs=2")
    with pytest.raises(ConfigError, match="schedule='none' has no prune event in epochs=2, and method=rigl"):
        run(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_run_that_ends_short_of_its_target_is_recorded_as_failed(quick_cfg, monkeypatch):
    # the refusal before training switched off: the check at the run's end is the second line
    monkeypatch.setattr("flipout_repro.training.build.check_reaches", lambda *a: None)
    cfg = quick_cfg("method=rigl", "schedule=none", "sparsity=0.9", "epochs=1")
    with pytest.raises(SparsityNotReached, match="ended at sparsity 0, short of its target 0.9"):
        run(cfg)
    summary = json.loads(folder_of(cfg).summary.read_text())
    assert summary["status"] == "failed" and summary["stop_reason"] == "sparsity_not_reached"
    assert summary["achieved_sparsity"] == 0.0
