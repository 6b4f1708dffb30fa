"""The report on runs derived from runs: a parent setting (SNIP at 90 %, 3 seeds), its shuffle control (the
same seeds) and an IMP level, written here as run.py writes their summaries (the child's config is the
parent's with its method replaced and the parent named). The controls table's paired difference and its t
interval are those computed by hand, and stay when the parent's folders are gone; the compute figure holds
each cell's (training compute, accuracy); runs.csv names each derived run's parent."""
import json
import math
import shutil

import pandas as pd
import pytest

from flipout_repro.cli.report import main
from flipout_repro.config.identity import identity, stored_identity
from flipout_repro.reporting import tables
from flipout_repro.reporting.aggregate import make_report
from flipout_repro.reporting.compute import draw_compute
from flipout_repro.reporting.derived import claim, control_rows
from flipout_repro.reporting.figures import draw_pair
from flipout_repro.rundir import Summary, write_json
from helpers import write_summary

BASE = ("experiment=quickstart", "epochs=2")
PARENT = (*BASE, "method=snip", "sparsity=0.9")
SEEDS = (0, 1, 2)
PARENT_ACC = (97.0, 96.5, 98.0)  # mean 97.1667, std sqrt(7/12) = 0.7638
CONTROL_ACC = (95.0, 95.0, 95.5)  # mean 95.1667, std sqrt(1/12) = 0.2887
# parent - control per seed: 2.0, 1.5, 2.5: mean 2.0, sd 0.5, se 0.5 / sqrt(3); t(0.975, df=2) = 4.302653
HALF = 4.302653 * 0.5 / math.sqrt(3)  # 1.242068


def write_child(root, parent_run, method, seed, acc, train_fraction, extra=(), in_identity=True, sparsity=None):
    """A derived run's summary.json: the parent's config with ``method`` as its method node (and, for a
    control, ``parent`` naming it), seed and sparsity the parent's, the parent's numbers copied as run.py
    copies them (docs: the derived-run interface)."""
    p = json.loads((parent_run / "summary.json").read_text())
    pid = stored_identity(p["config"])
    cfg = dict(p["config"], method=method, seed=seed)
    if sparsity is not None:
        cfg["sparsity"] = sparsity
    if in_identity:
        cfg["parent"] = {"run": str(parent_run), "hash": p["hash"]}
    ident = identity(cfg)
    folder = ident.folder(root)
    parent = {"run_dir": str(parent_run), "hash": p["hash"], "seed": p["seed"], "method": p["method"],
              "setting_label": pid.axes_label(), "setting": pid.setting_hash, "target_sparsity": p["target_sparsity"],
              "achieved_sparsity": p["achieved_sparsity"], "final_test_acc": p["final_test_acc"],
              "took": "the mask, permuted within each layer; the parent's initial weights"}
    s = Summary(model=p["model"], dataset=p["dataset"], method=method["name"], seed=seed,
                target_sparsity=cfg["sparsity"], config=cfg, epochs=cfg["epochs"], hash=ident.hash,
                achieved_sparsity=cfg["sparsity"], final_test_acc=acc, best_test_acc=acc, precision=cfg["precision"],
                wall_time_s=60.0, device="cpu", run_dir=str(folder),
                extra={"parent": parent, "train_macs_fraction": train_fraction, **dict(extra)})
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "summary.json", s.to_json())
    return folder


SHUFFLE = {"name": "control", "kind": "shuffle", "of": "snip"}
IMP = {"name": "imp", "rewind": "lottery", "rewind_epoch": 1, "fraction": 0.2, "count": "exact", "finetune_epochs": None}


@pytest.fixture
def results(tmp_path):
    parents = {seed: write_summary(tmp_path, *PARENT, seed=seed, acc=acc, train_fraction=0.4)
               for seed, acc in zip(SEEDS, PARENT_ACC)}
    for seed, acc in zip(SEEDS, CONTROL_ACC):
        write_child(tmp_path, parents[seed], SHUFFLE, seed, acc, 0.45, {"control": "shuffle"})
    # IMP level 2 at 36 % (two rounds of 20 %): its chain cost 2.5 dense runs; its parent is level 1
    level1 = write_summary(tmp_path, *BASE, "method=global_magnitude", "sparsity=0.2", seed=0, acc=97.9)
    for seed, acc in zip((0, 1), (97.5, 97.7)):
        write_child(tmp_path, level1, IMP, seed, acc, 2.5, {"imp": {"level": 2, "rewind": "lottery"}},
                    in_identity=False, sparsity=0.36)
    write_summary(tmp_path, *BASE, "method=dense", "sparsity=0", seed=0, acc=98.0, train_fraction=1.0)
    return tmp_path


def read_controls(root):
    [row] = pd.read_csv(root / "tables" / "controls.csv").itertuples()
    return row


def test_the_controls_table_holds_the_paired_difference_computed_by_hand(results):
    make_report(results, sweeps=[])
    r = read_controls(results)
    assert (r.parent_label, r.target_sparsity, r.control, r.parent_from) == ("snip (schedule=one_shot)", 0.9, "shuffle", "runs")
    assert r.parent_mean == pytest.approx(97.1666667, abs=1e-4) and r.parent_std == pytest.approx(0.763763, abs=1e-4)
    assert r.control_mean == pytest.approx(95.1666667, abs=1e-4) and r.control_std == pytest.approx(0.288675, abs=1e-4)
    assert r.paired_seeds == "0,1,2" and r.base_kind == "paired" and r.verdict == "better"
    assert r.base_diff == pytest.approx(2.0, abs=1e-4)
    assert (r.base_lo, r.base_hi) == (pytest.approx(2.0 - HALF, abs=1e-4), pytest.approx(2.0 + HALF, abs=1e-4))
    md = (results / "tables" / "lenet300_100-mnist5k.md").read_text()
    assert "## Controls" in md
    assert "- snip (schedule=one_shot) at 90.00 %, shuffle: the mask beats its layer counts by +2.00 [+0.76, +3.24] (3 seeds)." in md
    assert ("| snip (schedule=one_shot) | 90.00 % | shuffle | 97.17 ± 0.76 (0,1,2) | 95.17 ± 0.29 (0,1,2) | +2.00 [+0.76, +3.24] p ✱"
            " better |") in md


def test_without_the_parents_folders_the_row_keeps_its_numbers(results):
    make_report(results, sweeps=[])
    before = read_controls(results)
    shutil.rmtree(results / "runs" / "lenet300_100-mnist5k" / "snip")
    make_report(results, sweeps=[])
    after = read_controls(results)
    assert after.parent_from == "copied"
    for key in ("parent_mean", "parent_std", "control_mean", "base_diff", "base_lo", "base_hi"):
        assert getattr(after, key) == pytest.approx(getattr(before, key), abs=1e-9), key
    assert (after.paired_seeds, after.verdict) == ("0,1,2", "better")
    assert "| snip (schedule=one_shot) | 90.00 % | shuffle | 97.17 ± 0.76 (0,1,2), copied |" in (
        results / "tables" / "lenet300_100-mnist5k.md").read_text()


def test_the_runs_csv_names_each_derived_runs_parent(results):
    make_report(results, sweeps=[])
    runs = pd.read_csv(results / "tables" / "runs.csv")
    parents = runs[runs["method"] == "snip"].set_index("seed")
    controls = runs[runs["method"] == "control"].set_index("seed")
    assert list(controls["control"]) == ["shuffle"] * 3 and controls["imp_level"].isna().all()
    for seed in SEEDS:
        assert controls.loc[seed, "parent_run_dir"] == parents.loc[seed, "run_dir"]
        assert controls.loc[seed, "parent_hash"] == parents.loc[seed, "hash"]
        assert controls.loc[seed, "parent_final_test_acc"] == PARENT_ACC[seed]
    imp = runs[runs["method"] == "imp"]
    assert list(imp["imp_level"]) == [2, 2] and imp["control"].isna().all()
    level1 = runs[runs["method"] == "global_magnitude"].iloc[0]
    assert set(imp["parent_hash"]) == {level1["hash"]} and set(imp["parent_run_dir"]) == {level1["run_dir"]}
    assert parents[["parent_run_dir", "parent_hash", "control", "imp_level"]].isna().all().all()
    md = (results / "tables" / "lenet300_100-mnist5k.md").read_text()
    where = md[md.index("## Where the parents are"):].splitlines()
    snip_hash = parents["hash"].iloc[0]
    [line] = [x for x in where if x.startswith("- control")]
    assert line.endswith(f"3 runs, parents under `runs/lenet300_100-mnist5k/snip/sparsity_0.9/{snip_hash}/`"
                         f" (1 parent cell: {snip_hash})")
    [line] = [x for x in where if x.startswith("- imp")]
    assert f"2 runs, parents under `runs/lenet300_100-mnist5k/global_magnitude/sparsity_0.2/{level1['hash']}/seed_0/`" \
        in line


def test_the_compute_figure_holds_each_cells_compute_and_accuracy(results):
    r = make_report(results, sweeps=[])
    [png] = [f for f in r["files"] if f.name.endswith("-compute.png")]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.with_suffix(".pdf").exists()
    points = pd.read_csv(png.with_suffix(".csv"))
    got = {(row.method, round(row.train_macs_fraction, 6), round(row.acc_mean, 4), row.sparsity)
           for row in points.itertuples()}
    # global_magnitude (level 1) recorded no compute, and the control is compared in its own table: not drawn
    assert got == {("snip", 0.4, 97.1667, 0.9), ("imp", 2.5, 97.6, 0.36), ("dense", 1.0, 98.0, 0.0)}
    assert f"curves/{png.name}" in (results / "tables" / "lenet300_100-mnist5k.md").read_text()


def test_the_figure_can_show_effective_sparsity(results, capsys):
    for run in (results / "runs" / "lenet300_100-mnist5k" / "snip").glob("*/*/seed_*"):
        s = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps(s | {"effective_sparsity": 0.93}))
    cells = tables.short_labels(tables.aggregate(tables.load_runs(results / "runs")).assign(
        paper_acc=math.nan, paper_std=math.nan, paper_sparsity=math.nan))
    fig, points = draw_pair(cells, "t", "effective")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("effective sparsity")
    # the IMP and level-1 cells have no effective sparsity: left out, and the label says so (the control is
    # never drawn: the controls table compares it)
    assert "2 cells without an effective sparsity not drawn" in ax.get_xlabel()
    assert [(p["method"], p["sparsity"]) for p in points if p["kind"] == "target"] == [("snip", 0.93)]
    main(["--results-dir", str(results), "--no-sweeps", "--x", "effective"])
    assert "runs" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--results-dir", str(results), "--x", "actual"])
    assert exc.value.code == 2


def test_the_compute_figure_labels_each_point_with_its_sparsity_on_a_log_axis(results):
    cells = tables.short_labels(tables.aggregate(tables.load_runs(results / "runs")))
    fig, _ = draw_compute(cells, "t")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] < 0.4 and ax.get_xlim()[1] > 2.5
    # every series has few points: each is labelled (the control is not drawn)
    assert sorted(t.get_text() for t in ax.texts) == ["36%", "90%", "dense"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "snip (schedule=one_shot) [n=3]" in legend and "one dense training run" in legend


def control_cells(parent, control, parent_finals=None):
    """A parent cell and its control's, as tables.aggregate and short_labels give them."""
    common = {"model": "m", "dataset": "d", "protocol": "p", "target_sparsity": 0.9, "shared": ""}
    return pd.DataFrame([
        {**common, "method": "snip", "hash": "aaaa", "n_seeds": len(parent), "finals": parent, "parent_hash": None,
         "parent_label": None, "parent_finals": {}, "control": None, "final_mean": math.nan, "final_std": math.nan},
        {**common, "method": "control", "hash": "bbbb", "n_seeds": len(control), "finals": control,
         "parent_hash": "aaaa", "parent_label": "snip", "parent_finals": parent_finals or {}, "control": "invert",
         "final_mean": sum(control.values()) / len(control), "final_std": math.nan}])


def test_a_control_is_paired_over_the_seeds_both_ran_and_a_loss_is_said_so():
    # the parent has a 4th seed: its mean is over its 4, the difference over seeds 0-2 only
    rows = control_rows(control_cells({0: 95.0, 1: 95.0, 2: 95.5, 3: 99.0}, {0: 97.0, 1: 96.5, 2: 98.0}))
    [r] = rows.itertuples()
    assert r.parent_mean == pytest.approx(96.125) and r.paired_seeds == "0,1,2" and r.parent_seeds == "0,1,2,3"
    assert r.base_diff == pytest.approx(-2.0) and r.base_hi == pytest.approx(-2.0 + HALF) and r.verdict == "worse"
    assert claim(rows.iloc[0]) == ("snip at 90.00 %, invert: the mask loses to its inverse by -2.00 [-3.24, -0.76]"
                                   " (3 seeds)")
    # differences 1, -1, 0.5: mean 1/6, an interval around zero
    rows = control_rows(control_cells({0: 96.0, 1: 95.0, 2: 96.0}, {0: 95.0, 1: 96.0, 2: 95.5}))
    assert rows["verdict"].iloc[0] == "within noise"
    assert claim(rows.iloc[0]).startswith("snip at 90.00 %, invert: the mask against its inverse, within noise: +0.17 [")
