"""flipout-bench's flags: a value at 0 or out of range, --sparsity nan, a corrupt results file and a bad
--startup override each end in one line that names the flag or file, exit code 2, before anything is
measured."""
import json

import pytest

from flipout_repro.bench import startup, training
from flipout_repro.cli.bench import main


@pytest.mark.parametrize("args, line", [
    (["--steps", "0"], "--steps=0 must be >= 1: e.g. --steps 5"),
    (["--rounds", "0"], "--rounds=0 must be >= 1"),
    (["--batch-size", "0"], "--batch-size=0 must be >= 1"),
    (["--classes", "0"], "--classes=0 must be >= 1"),
    (["--warmup", "-1"], "--warmup=-1 must be >= 0"),
    (["--repeats", "0"], "--repeats=0 must be >= 1"),
    (["--runs", "0"], "--runs=0 must be >= 1"),
    (["--sweep-jobs", "-2"], "--sweep-jobs=-2 must be >= 0"),
    (["--spread-limit", "0.9"], "--spread-limit=0.9 must be >= 1 (slowest round / fastest round): e.g."),
    (["--spread-limit", "nan"], "--spread-limit=nan must be >= 1"),
    (["--sparsity", "nan"], "--sparsity=nan must be in [0, 1)"),
    (["--sparsity", "1"], "--sparsity=1.0 must be in [0, 1)"),
    (["--sparsity", "-0.1"], "--sparsity=-0.1 must be in [0, 1)"),
    (["--input-shape", "3", "0", "32"], "--input-shape=3 0 32 must be positive"),
    (["--inference", "x", "--batches", "1", "0"], "--batches=1 0 must be >= 1"),
    (["--startup", "--runs", "0"], "--runs=0 must be >= 1"),
])
def test_each_flag_out_of_range_is_one_line_naming_it(args, line, capsys, monkeypatch):
    measured = []
    monkeypatch.setattr(training, "bench", lambda *a, **k: measured.append(a))
    with pytest.raises(SystemExit) as exc:
        main(["--model", "lenet300_100", "--device", "cpu", *args])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("flipout-bench: error: ") and line in err, err
    assert measured == []


@pytest.mark.parametrize("text, why", [("[{\"a\": 1}", "is not valid JSON"), ("{\"a\": 1}", "holds a JSON dict")])
def test_a_corrupt_results_file_is_found_before_measuring(tmp_path, capsys, monkeypatch, text, why):
    (tmp_path / "cpu.json").write_text(text)
    measured = []
    monkeypatch.setattr(training, "bench", lambda *a, **k: measured.append(a))
    with pytest.raises(SystemExit) as exc:
        main(["--model", "lenet300_100", "--device", "cpu", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and str(tmp_path / "cpu.json") in err and why in err
    assert measured == [] and (tmp_path / "cpu.json").read_text() == text  # untouched
    (tmp_path / "startup.json").write_text(text)
    monkeypatch.setattr(startup, "startup_bench", lambda *a, **k: measured.append(a))
    with pytest.raises(SystemExit) as exc:
        main(["--startup", "--out", str(tmp_path)])
    assert exc.value.code == 2 and str(tmp_path / "startup.json") in capsys.readouterr().err and measured == []


def test_a_good_result_is_appended(tmp_path, monkeypatch, capsys):
    (tmp_path / "cpu.json").write_text(json.dumps([{"old": 1}]))
    monkeypatch.setattr(training, "format_table", lambda r: "table")
    monkeypatch.setattr(training, "bench", lambda *a, **k: {"new": 2})
    main(["--model", "lenet300_100", "--device", "cpu", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "cpu.json").read_text()) == [{"old": 1}, {"new": 2}]


def test_a_bad_startup_override_names_its_cause_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--startup", "--runs", "1", "--out", str(tmp_path), "--overrides", "experiment=quickstart", "optim.lr=["])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    assert "optim.lr='[' cannot be read as an override" in err and "HYDRA_FULL_ERROR" not in err
    assert not (tmp_path / "startup.json").exists()


def test_the_child_error_line_is_kept_and_hydras_hint_dropped():
    err = startup.run_failure(["x=1"], 1, "Error parsing override 'x'\nno viable alternative\n\n"
                                         "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n")
    assert isinstance(err, RuntimeError) and str(err).endswith("exited with code 1: no viable alternative")
    bad = startup.run_failure(["lr=1"], 2, "flipout-train: error: lr=1 is not a config key: did you mean optim.lr?\n")
    assert isinstance(bad, ValueError) and "did you mean optim.lr?" in str(bad)
