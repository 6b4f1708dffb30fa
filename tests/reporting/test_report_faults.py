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


def test_a_seed_with_nan_accuracy_or_an_infinite_best_is_left_out_of_the_cell(tmp_path, caplog):
    for seed, acc in zip((0, 1), (90.0, 92.0)):
        write_summary(tmp_path, *RUN, seed=seed, acc=acc)
    write_summary(tmp_path, *RUN, seed=2, acc=math.nan)
    path = next(tmp_path.glob("runs/**/seed_0/summary.json"))
    s = json.loads(path.read_text())
    inf = write_summary(tmp_path, *RUN, seed=3, acc=91.0) / "summary.json"
    inf.write_text(json.dumps({**json.loads(inf.read_text()), "best_test_acc": math.inf}))
    with caplog.at_level("WARNING", logger="flipout_repro"):
        runs = tables.load_runs(tmp_path / "runs")
    assert sorted(runs["status"]) == ["completed", "completed", "invalid", "invalid"]
    assert "final_test_acc is nan" in caplog.text and "best_test_acc is inf" in caplog.text
    [c] = tables.aggregate(runs).itertuples()
    assert (c.n_seeds, c.seeds, c.final_mean, c.best_mean) == (2, "0,1", 91.0, 92.0)
    assert s["seed"] == 0


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
