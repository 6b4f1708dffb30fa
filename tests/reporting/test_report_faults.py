"""flipout-report and bad run folders: damaged summaries are skipped with a warning, a
read-only output folder is one line, and a seed without a finite accuracy is neither counted nor shown."""
import json
import math
import os

import pytest

from flipout_repro.cli.report import main
from flipout_repro.reporting import sweep_status, tables
from flipout_repro.rundir import RunDir
from helpers import write_summary

RUN = ("experiment=quickstart", "method=flipout", "sparsity=0.75")


@pytest.mark.parametrize("key, value, named", [
    ("final_test_acc", None, "final_test_acc=None"), ("final_test_acc", True, "final_test_acc=True"),
    ("final_test_acc", 150, "final_test_acc=150"), ("final_test_acc", math.nan, "final_test_acc=nan"),
    ("best_test_acc", math.inf, "best_test_acc=inf"), ("target_sparsity", math.nan, "target_sparsity=nan"),
    ("seed", "2", "seed='2'"), ("model", "../../escape", "model='../../escape'"),
    ("quantization", "fast", "quantization='fast'"), ("status", "great", "status='great'"),
    ("effective_sparsity", 1.5, "effective_sparsity=1.5"), ("train_macs_fraction", -0.5, "train_macs_fraction=-0.5"),
    ("parent", "snip", "parent='snip'"), ("parent", {"final_test_acc": 150}, "parent.final_test_acc=150"),
    ("parent", {"seed": 1.5}, "parent.seed=1.5"), ("control", 3, "control=3"), ("imp", {"level": -1}, "imp.level=-1")])
def test_a_summary_that_breaks_its_typed_definition_is_skipped_and_named(tmp_path, caplog, key, value, named):
    for seed, acc in zip((0, 1), (90.0, 92.0)):
        write_summary(tmp_path, *RUN, seed=seed, acc=acc)
    bad = write_summary(tmp_path, *RUN, seed=2, acc=50.0) / "summary.json"
    bad.write_text(json.dumps({**json.loads(bad.read_text()), key: value}))
    with caplog.at_level("WARNING", logger="flipout_repro"):
        runs = tables.load_runs(tmp_path / "runs")
    assert sorted(runs["seed"]) == [0, 1]
    assert f"skipped {bad}" in caplog.text and named in caplog.text
    [c] = tables.aggregate(runs).itertuples()
    assert (c.n_seeds, c.seeds, c.final_mean) == (2, "0,1", 91.0)


def test_a_run_short_of_its_target_sparsity_is_listed_but_never_placed_at_it(tmp_path, caplog):
    write_summary(tmp_path, *RUN, seed=0, acc=90.0)
    short = write_summary(tmp_path, *RUN, seed=1, acc=99.0) / "summary.json"
    short.write_text(json.dumps({**json.loads(short.read_text()), "achieved_sparsity": 0.0}))
    with caplog.at_level("WARNING", logger="flipout_repro"):
        runs = tables.load_runs(tmp_path / "runs")
    assert sorted(runs["status"]) == ["completed", "invalid"]
    assert "achieved sparsity 0 is short of its target 0.75" in caplog.text
    [c] = tables.aggregate(runs).itertuples()
    assert (c.n_seeds, c.final_mean) == (1, 90.0)


@pytest.mark.parametrize("text, state", [("[1, 2]", "damaged"), ("{not json", "damaged"), ('"x"', "damaged"),
                                         ('{"model": "vgg19"}', "done")])
def test_a_damaged_summary_is_skipped_with_a_warning(tmp_path, caplog, capsys, text, state):
    write_summary(tmp_path, *RUN, acc=90.0)
    bad = tmp_path / "runs" / "x" / "summary.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    with caplog.at_level("WARNING", logger="flipout_repro"):
        main(["--results-dir", str(tmp_path), "--no-sweeps"])
    assert "1 runs" in capsys.readouterr().out and f"skipped {bad}" in caplog.text
    assert sweep_status.run_state(RunDir(bad.parent)) == state


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    write_summary(tmp_path, *RUN, acc=90.0)
    (tmp_path / "file").write_text("")
    out = tmp_path / "out"
    out.mkdir()
    real_access = os.access
    # a read-only folder (simulated: the tests may run as root, who writes anywhere)
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(out) else real_access(p, mode))
    for where, problem in ((out, "is not writable"), (tmp_path / "file", "is not a folder"),
                           (tmp_path / "file" / "sub", "is not a folder")):
        with pytest.raises(SystemExit) as exc:
            main(["--results-dir", str(tmp_path), "--out", str(where), "--no-sweeps"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1, err
        assert err.startswith("flipout-report: error: --out=") and problem in err, err
    monkeypatch.setattr(os, "access", real_access)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(out / "tables"))

    monkeypatch.setattr(tables.Path, "mkdir", denied)  # a failure the check cannot foresee
    with pytest.raises(SystemExit) as exc:
        main(["--results-dir", str(tmp_path), "--out", str(out), "--no-sweeps"])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.count("\n") == 1 and "Permission denied" in err, err
