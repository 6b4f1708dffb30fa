"""summary.json's contract (rundir.Summary): written with its format, read back the same, read from a run of
an earlier version (format 0, no "format" key), refused with a reason when newer or lacking a key."""
import json
import re
from pathlib import Path

import pytest

from helpers import write_summary
from flipout_repro.reporting import tables
from flipout_repro.rundir import SUMMARY_FORMAT, DamagedRun, RunDir, Summary, load_summary

V0_1_0 = Path(__file__).parents[1] / "fixtures" / "runs_v0_1_0"


def test_a_summary_is_written_with_its_format_and_read_back_the_same(tmp_path):
    run = write_summary(tmp_path, "experiment=quickstart", "method=flipout", "sparsity=0.75", acc=91.0, int8=90.5)
    d = json.loads((run / "summary.json").read_text())
    assert next(iter(d)) == "format" and d["format"] == SUMMARY_FORMAT == 1
    assert "final_val_acc" not in d and "init_from" not in d  # optional: written only when they apply
    assert d["quantization"] == {"test_acc": 90.5, "fp32_test_acc": 91.0}  # extra: at the top level
    s = load_summary(RunDir(run))
    assert (s.method, s.final_test_acc, s.extra["quantization"]["test_acc"]) == ("flipout", 91.0, 90.5)
    assert s.to_json() == d and Summary.from_json(s.to_json()) == s


def test_a_summary_of_an_earlier_version_reads_as_format_0():
    [path] = V0_1_0.glob("**/summary.json")
    d = json.loads(path.read_text())
    assert "format" not in d
    s = Summary.from_json(d)
    assert s.format == 0 and s.method == "global_magnitude" and "layers" in s.extra and "format" not in s.extra
    assert s.to_json()["format"] == 0  # rewritten, it says what it is


@pytest.mark.parametrize("change, words", [({"format": SUMMARY_FORMAT + 1}, "is not a summary format this version reads"),
                                           ({"config": None}, "lacks config (a run's summary.json always has them)")])
def test_a_newer_or_incomplete_summary_is_skipped_with_the_reason(tmp_path, caplog, change, words):
    run = write_summary(tmp_path, "experiment=quickstart", "method=flipout", "sparsity=0.75")
    d = {k: v for k, v in json.loads((run / "summary.json").read_text()).items() if k not in change or change[k]}
    (run / "summary.json").write_text(json.dumps(d | {k: v for k, v in change.items() if v}))
    with pytest.raises(DamagedRun, match=re.escape(words)):
        load_summary(RunDir(run))
    with caplog.at_level("WARNING", logger="flipout_repro"):
        assert len(tables.load_runs(tmp_path / "runs")) == 0
    assert words in caplog.text
