"""Results folders written under an earlier identity format: every run folder found, finished runs
skipped, interrupted ones resumed; folders that cannot be read are named and left untouched."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import make_cfg
from flipout_repro.config import identity
from flipout_repro.config.migrate import MARKER, migrate, recorded_format
from flipout_repro.reporting.aggregate import make_report
from flipout_repro.run import run

FIXTURES = Path(__file__).parents[1] / "fixtures"
#: version 0.1.0: a finished one-epoch global-magnitude run on the bundled subset of that version
V0_1_0 = FIXTURES / "runs_v0_1_0"
#: identity format 1 (the resolved config's hash): a finished run and one interrupted at step 40
FORMAT_1 = FIXTURES / "runs_format_1"
QUICK = ("experiment=quickstart", "progress=false", "device=cpu")


def copy(fixture: Path, tmp_path: Path) -> Path:
    shutil.copytree(fixture, tmp_path / "runs", symlinks=True)
    return tmp_path


def test_a_run_of_version_0_1_0_is_moved_skipped_and_reported(tmp_path, caplog):
    results = copy(V0_1_0, tmp_path)
    [old] = (results / "runs").glob("**/summary.json")
    acc = json.loads(old.read_text())["final_test_acc"]
    cfg = make_cfg(*QUICK, "method=global_magnitude", "schedule=one_shot", "sparsity=0.75", "epochs=1", "seed=3",
                   f"results_dir={results}", "optim.lr=0.05", "optim.milestones=[325]", "optim.milestones_of=350",
                   "schedule.rounding=exact",  # the bundled subset's settings of version 0.1.0:
                   "dataset.mean=[0.5]", "dataset.std=[0.5]", "dataset.resize=null", "dataset.image_size=28")
    with caplog.at_level("INFO", logger="flipout_repro"):
        summary = run(cfg)
    assert "moved 1 run folder to the identity format 2" in caplog.text
    assert "already finished, skipped" in caplog.text
    assert not old.exists() and summary["final_test_acc"] == acc
    new = Path(summary["run_dir"])
    assert new.parent.name == summary["hash"] and new.name == "seed_3"
    assert not (new / "checkpoint.pt").exists()  # nothing was trained
    assert "flipout_repro.sparsity.schedule.OneShot" in (new / "config.yaml").read_text()  # today's module
    assert recorded_format(results) == identity.FORMAT
    report = make_report(results, results / "out", sweeps=[])
    assert report["runs"] == 1 and report["cells"] >= 1


def test_a_results_folder_of_format_1_resumes_where_it_stopped(tmp_path, caplog):
    results = copy(FORMAT_1, tmp_path)
    before = sorted(p.relative_to(results) for p in results.glob("runs/**/seed_*"))
    assert len(before) == 2
    finished = make_cfg(*QUICK, f"results_dir={results}", "epochs=2", "method=global_magnitude",
                        "schedule=one_shot", "schedule.epoch=1", "sparsity=0.75", "seed=0")
    with caplog.at_level("INFO", logger="flipout_repro"):
        done = run(finished)
    assert "moved 2 run folders" in caplog.text and "already finished, skipped" in caplog.text
    assert done["final_test_acc"] == 89.7
    interrupted = make_cfg(*QUICK, f"results_dir={results}", "epochs=3", "method=flipout", "sparsity=0.75", "seed=1")
    caplog.clear()
    with caplog.at_level("INFO", logger="flipout_repro"):
        resumed = run(interrupted)
    assert "resuming" in caplog.text and "after step 40" in caplog.text
    assert "moved" not in caplog.text  # once per results folder
    assert resumed["status"] == "completed"
    # the resumed run is the run trained in one go with today's code, bit for bit
    fresh = run(make_cfg(*QUICK, f"results_dir={tmp_path / 'fresh'}", "epochs=3", "method=flipout", "sparsity=0.75",
                         "seed=1"))
    assert resumed["final_test_acc"] == fresh["final_test_acc"]
    a, b = (torch.load(Path(s["run_dir"]) / "model.pt", weights_only=True) for s in (resumed, fresh))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert Path(resumed["run_dir"]).relative_to(results) == Path(fresh["run_dir"]).relative_to(tmp_path / "fresh")


def test_folders_that_cannot_be_migrated_are_named_and_left_untouched(tmp_path, caplog):
    results = copy(FORMAT_1, tmp_path)
    runs = results / "runs"
    half = runs / "lenet300_100-mnist5k" / "flipout" / "sparsity_0.5" / "0123abcd" / "seed_0"
    half.mkdir(parents=True)
    (half / "command.txt").write_text("started\n")  # stopped before it wrote its config
    alien = runs / "elsewhere" / "seed_9"
    alien.mkdir(parents=True)
    (alien / "config.yaml").write_text("learning_rate: 0.1\n")  # not a run of any known format
    broken = runs / "broken" / "seed_1"
    broken.mkdir(parents=True)
    (broken / "config.yaml").write_text("model: [unclosed\n")
    kept = {p: p.read_bytes() for p in (half / "command.txt", alien / "config.yaml", broken / "config.yaml")}
    with caplog.at_level("INFO", logger="flipout_repro"):
        result = migrate(results)
    assert len(result.moved) == 2
    left = dict(result.left)
    assert "no config.yaml" in left[half]
    assert "names no model, dataset and method" in left[alien]
    assert "cannot be read" in left[broken]
    for path, why in left.items():
        assert f"left as it is: {path}: {why}" in caplog.text
    assert all(p.read_bytes() == data for p, data in kept.items())  # nothing deleted, nothing changed
    assert (runs / MARKER).read_text() == f"{identity.FORMAT}\n"
    assert migrate(results).moved == []  # done: the next call looks no further


def test_a_newer_format_is_refused_and_nothing_moves(tmp_path):
    results = copy(FORMAT_1, tmp_path)
    (results / "runs" / MARKER).write_text(f"{identity.FORMAT + 1}\n")
    before = sorted(p for p in results.glob("runs/**/*"))
    with pytest.raises(ValueError, match="newer than this flipout-repro's"):
        migrate(results)
    assert sorted(p for p in results.glob("runs/**/*")) == before


def test_flipout_report_moves_them_and_says_so(tmp_path, capsys):
    from flipout_repro.cli.report import main

    results = copy(FORMAT_1, tmp_path)
    main(["--results-dir", str(results), "--no-sweeps"])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"moved 2 run folders to the identity format 2 (each old and new path:" \
        f" {results / 'runs' / 'migration.txt'})"
    moves = (results / "runs" / "migration.txt").read_text().splitlines()
    assert len(moves) == 2 and all(" -> " in line for line in moves)
    assert "1 runs, 1 cells" in out  # the finished one; the interrupted one has no summary yet
    main(["--results-dir", str(results), "--no-sweeps"])
    assert "moved" not in capsys.readouterr().out


def test_a_runs_folder_that_is_a_link_is_refused_and_nothing_is_moved_through_it(tmp_path):
    from flipout_repro.rundir import DamagedRun

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(V0_1_0, elsewhere, symlinks=True)
    before = sorted(str(p.relative_to(elsewhere)) for p in elsewhere.rglob("*"))
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs").symlink_to(elsewhere)
    with pytest.raises(DamagedRun, match="runs is a symbolic link"):
        migrate(results)
    assert sorted(str(p.relative_to(elsewhere)) for p in elsewhere.rglob("*")) == before
