"""Runs are compared only within one protocol: a report on quickstart runs of 10 and 20 epochs with the
global and the ERK budget writes a section per protocol, computes no difference across protocols and says
which cells had no baseline and why; --where and --sweep pick runs and refuse bad input in one line."""
import pandas as pd
import pytest

from helpers import write_summary
from flipout_repro.cli.report import main
from flipout_repro.reporting.aggregate import make_report

Q = ("experiment=quickstart",)


def lenet(root, method, epochs, budget, seeds, acc):
    for seed in seeds:
        write_summary(root, *Q, f"method={method}", "sparsity=0.9", f"epochs={epochs}", f"budget={budget}",
                      seed=seed, acc=acc + seed)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    lenet(root, "flipout", 10, "global", (0, 1, 2), 92.0)
    lenet(root, "global_magnitude", 10, "global", (0, 1, 2), 90.0)  # the baseline: only here
    lenet(root, "flipout", 10, "erk", (0, 1), 93.0)
    lenet(root, "flipout", 20, "global", (0, 1), 94.0)
    lenet(root, "rigl", 20, "global", (0, 1), 91.0)
    lenet(root, "rigl", 20, "erk", (0,), 92.0)
    return root


def test_each_protocol_is_its_own_section_and_no_difference_crosses_protocols(mixed, tmp_path):
    r = make_report(mixed, tmp_path, sweeps=[])
    assert (r["runs"], r["cells"]) == (13, 6)
    md = (tmp_path / "tables" / "lenet300_100-mnist5k.md").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads == ["## lenet300_100 on mnist5k, 10 epochs, batch 128, fp32",
                     "## lenet300_100 on mnist5k, 20 epochs, batch 128, fp32"]
    csv = pd.read_csv(tmp_path / "tables" / "lenet300_100-mnist5k.csv")
    compared = csv[csv["base_diff"].notna()]
    # the one cell with a baseline cell of its protocol, budget and sparsity: flipout, 10 epochs, global
    assert list(compared["setting_label"]) == ["flipout, schedule=periodic, schedule.rounding=reference"]
    assert list(compared["epochs"]) == [10] and compared["base_diff"].iloc[0] == pytest.approx(2.0)
    notes = dict(zip(zip(csv["method"], csv["epochs"], csv["setting_label"].str.contains("erk")), csv["base_note"]))
    assert notes[("flipout", 10, True)] == ("no global_magnitude runs with budget=erk in this protocol (it has"
                                            " budget=global)")
    for key in (("flipout", 20, False), ("rigl", 20, False), ("rigl", 20, True)):
        assert notes[key] == "no global_magnitude runs with this protocol", key
    assert pd.isna(notes[("global_magnitude", 10, False)])  # the baseline itself
    twenty = md[md.index(heads[1]):]
    assert "Δ vs" not in twenty and "Not compared with global_magnitude:" in twenty
    assert ("- flipout (schedule=periodic) at 90.00 %; rigl (budget=erk, schedule=one_shot) at 90.00 %; rigl"
            " (schedule=one_shot) at 90.00 %: no global_magnitude runs with this protocol") in twenty
    assert sorted(r["no_baseline"]) == sorted([
        "flipout (budget=erk) at 90.00 %: no global_magnitude runs with budget=erk in this"
        " protocol (it has budget=global) (lenet300_100 on mnist5k, 10 epochs, batch 128, fp32)",
        *(f"{lab} at 90.00 %: no global_magnitude runs with this protocol (lenet300_100 on mnist5k, 20 epochs,"
          " batch 128, fp32)" for lab in ("flipout (schedule=periodic)", "rigl (schedule=one_shot)",
                                          "rigl (budget=erk, schedule=one_shot)"))])
    # one figure per protocol; a forest plot only where something was compared
    assert len(list((tmp_path / "curves").glob("lenet300_100-mnist5k-*.png"))) == 3
    assert len(list((tmp_path / "curves").glob("*-vs-global_magnitude.png"))) == 1


def test_where_keeps_the_runs_it_names(mixed, tmp_path):
    def runs(*where):
        return make_report(mixed, tmp_path, sweeps=[], where=list(where))["runs"]

    assert runs("epochs=10") == 8 and runs("epochs=20") == 5
    assert runs("method=rigl") == 3 and runs("method.name=rigl", "budget.name=erk") == 1
    assert runs("budget=erk") == 3  # the identity's budget: erk, not the config's ``method``
    assert runs("optim.lr=0.1") == 13 and runs("optim.lr=1e-1", "seed=2") == 2  # a default value is a value too
    assert runs("optim.lr=0.05") == 0 and runs("model=lenet300_100", "dataset=mnist5k") == 13
    make_report(mixed, tmp_path, sweeps=[], where=["epochs=20"])
    md = (tmp_path / "tables" / "lenet300_100-mnist5k.md").read_text()
    assert "10 epochs" not in md and "## lenet300_100 on mnist5k, 20 epochs" in md
    # a baseline left out by the filter is said to be left out, not to be absent
    lines = make_report(mixed, tmp_path, sweeps=[], where=["method=flipout", "budget=global", "epochs=10"])["no_baseline"]
    assert lines == ["flipout at 90.00 %: no global_magnitude runs kept by --where/--sweep with this protocol"
                     " (lenet300_100 on mnist5k, 10 epochs, batch 128, fp32)"]


@pytest.mark.parametrize("args, words", [
    (["--where", "epochz=10"], ["--where epochz=10: no run here has the key 'epochz'; use one of", "epochs,",
                                "budget.name", "method.name"]),
    (["--where", "epochs"], ["--where 'epochs' is not KEY=VALUE: e.g. --where epochs=10"]),
    (["--sweep", "tiyn"], ["--sweep='tiyn' is not a sweep preset: did you mean tiny?"]),
])
def test_bad_filters_are_one_line_and_exit_2(mixed, tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as exc:
        main(["--results-dir", str(mixed), "--out", str(tmp_path), "--no-sweeps", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("flipout-report: error: ")
    assert all(w in err for w in words), err


def test_sweep_keeps_the_runs_of_its_jobs(tmp_path, capsys):
    for seed in (0, 1):  # two jobs of conf/sweep/tiny.yaml (quickstart, 8 epochs)
        write_summary(tmp_path, *Q, "method=random", "sparsity=0.75", "epochs=8", seed=seed, acc=90.0)
    write_summary(tmp_path, *Q, "method=random", "sparsity=0.75", "epochs=9", acc=90.0)  # no job of it
    main(["--results-dir", str(tmp_path), "--sweep", "tiny"])
    out = capsys.readouterr().out
    assert out.startswith("2 runs, 1 cells; 10 runs of the sweep presets you started not done")
    missing = (tmp_path / "tables" / "missing.md").read_text()
    assert "## tiny: 2 of its 12 jobs done" in missing and "dst_quickstart" not in missing
