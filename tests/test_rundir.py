"""Atomic writes through a fresh temporary file (a planted symlink is never
followed), a full disk said in one line with nothing partial left, damaged metrics lines and summaries."""
import errno
import json
import os

import pytest
import torch

from flipout_repro import rundir
from flipout_repro.rundir import (DamagedRun, RunDir, RunLock, atomic_torch_save, atomic_write_text,
                                  read_summary, write_json)
from flipout_repro.training.metrics_log import MetricsLog, truncate_metrics


@pytest.mark.parametrize("write, name", [
    (lambda p: write_json(p, {"status": "completed"}), "summary.json"),
    (lambda p: atomic_write_text(p, "x: 1\n"), "config.yaml"),
    (lambda p: atomic_torch_save({"w": torch.ones(2)}, p), "checkpoint.pt"),
    (lambda p: atomic_torch_save({"w": torch.ones(2)}, p), "masks.pt"),
])
def test_a_symlink_planted_at_the_old_temporary_name_is_not_followed(tmp_path, write, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / f"{name}.tmp").symlink_to(victim)
    write(tmp_path / name)
    assert victim.read_text() == "precious"
    assert (tmp_path / name).is_file() and not (tmp_path / name).is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, f"{name}.tmp", "victim.txt"])


def test_written_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "summary.json", {})
    finally:
        os.umask(umask)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644


def test_a_symlink_planted_at_the_lock_is_not_followed(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run.path / ".lock").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        with RunLock(run):
            pass
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("write", [
    lambda p: write_json(p, {"status": "completed"}),
    lambda p: atomic_torch_save({"w": torch.ones(1000)}, p),
])
def test_a_full_disk_is_said_plainly_and_leaves_no_partial_file(tmp_path, monkeypatch, write):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir.os, "fsync", full)
    with pytest.raises(OSError, match="no space left on device while writing .*summary.json") as err:
        write(target)
    assert err.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"] and target.read_text() == "old"


def test_metrics_lines_that_are_not_objects_are_dropped_and_records_cut_by_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"type": "epoch", "epoch": 1, "step": 32}, [1, 2], 5, "text",
             {"type": "prune", "epoch": 1, "step": 48}, {"type": "epoch", "epoch": 2, "step": 64},
             {"type": "prune", "epoch": 1, "step": "x"}, {"type": "epoch", "epoch": 1}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"cut sho')
    kept = truncate_metrics(path, last_step=32, last_epoch=1)
    assert kept == [lines[0], lines[7]]
    assert [json.loads(x) for x in path.read_text().splitlines()] == kept


@pytest.mark.parametrize("text, problem", [("[1, 2]", "is not a JSON object"), ("{not json", "cannot be read"),
                                           ('"done"', "is not a JSON object")])
def test_a_damaged_summary_is_one_clear_error(tmp_path, text, problem):
    run = RunDir(tmp_path)
    run.summary.write_text(text)
    with pytest.raises(DamagedRun, match=problem) as err:
        read_summary(run)
    assert "delete it" in str(err.value)


def test_final_names_planted_as_symlinks_are_replaced_or_refused_never_written_through(tmp_path):
    from flipout_repro.analysis.plots import write_run_curve

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    for name in ("curve.csv", "curve.png", "summary.json", "metrics.jsonl"):
        (run.path / name).symlink_to(victim)
    write_run_curve([{"epoch": 1, "sparsity": 0.5, "test_acc": 90.0}], run.curve_csv, run.curve_png)
    write_json(run.summary, {})
    with pytest.raises(DamagedRun, match="metrics.jsonl is a symbolic link"):
        MetricsLog(run)
    assert victim.read_text() == "precious"
    assert not run.curve_csv.is_symlink() and not run.summary.is_symlink()


def test_real_folder_makes_the_path_and_refuses_a_link_or_a_file_on_the_way(tmp_path):
    from flipout_repro.rundir import real_folder

    root = tmp_path / "results"
    assert real_folder(root / "a" / "b", root).is_dir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "a" / "link").symlink_to(outside)
    with pytest.raises(DamagedRun, match="link is a symbolic link"):
        real_folder(root / "a" / "link" / "c", root)
    (root / "file").write_text("")
    with pytest.raises(DamagedRun, match="is a file where a folder is expected"):
        real_folder(root / "file" / "c", root)
    with pytest.raises(DamagedRun, match="leaves"):
        real_folder(root / ".." / "x", root)
    assert list(outside.iterdir()) == []


def test_a_write_into_a_linked_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "export").symlink_to(outside)
    with pytest.raises(DamagedRun, match="export is a symbolic link"):
        write_json(tmp_path / "export" / "x.json", {})
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("value", ["..", "../x", "a/b", "", ".hidden", None, 3])
def test_a_name_read_back_that_could_name_another_folder_is_refused(value):
    from flipout_repro.rundir import path_name

    with pytest.raises(DamagedRun, match="model.name="):
        path_name(value, "model.name")


def test_torch_saves_full_disk_error_is_one_plain_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno as errno_mod
    import os

    from flipout_repro import rundir

    def full(obj, fh):  # what torch's zip writer raises when the disk fills mid-file
        fh.write(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(rundir.torch, "save", full)
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: type("S", (), {"f_bavail": 0, "f_frsize": real(p).f_frsize})())
    with pytest.raises(OSError) as err:
        rundir.atomic_torch_save({}, tmp_path / "model.pt")
    assert err.value.errno == errno_mod.ENOSPC and "no space left on device while writing" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_two_tools_adding_to_one_summary_at_once_both_keep_their_result(tmp_path):
    import threading

    from flipout_repro.rundir import RunLock, update_summary

    run = RunDir(tmp_path)
    write_json(run.summary, {"model": "m"})
    entered, release = threading.Event(), threading.Event()

    def slow_writer():  # holds the lock as flipout-quantize does around its merge
        with RunLock(run, wait=10):
            summary = read_summary(run)
            entered.set()
            release.wait(10)
            write_json(run.summary, summary | {"quantization": {"test_acc": 90.0}})

    t = threading.Thread(target=slow_writer)
    t.start()
    entered.wait(10)
    threading.Timer(0.3, release.set).start()
    update_summary(run, {"inference": {"speedup_b1": 1.5}}, wait=30)  # waits for the lock, then merges
    t.join()
    summary = read_summary(run)
    assert summary["quantization"] == {"test_acc": 90.0} and summary["inference"] == {"speedup_b1": 1.5}
