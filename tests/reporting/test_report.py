"""flipout-report on summaries written here: means and stds over seeds, the published value and the
difference, failed runs left out, the int8 column, missing paper cells, the figure and its points."""
import json
import math

import pandas as pd
import pytest

from flipout_repro.config.paths import reference_dir
from flipout_repro.reporting import compare, paper_identity, reference, sections, tables
from helpers import write_summary
from flipout_repro.cli.report import main
from flipout_repro.reporting.aggregate import make_report

VGG = ("experiment=vgg19_cifar10",)  # the paper's protocol: the sweep presets paper_vgg19*
HOYER = (*VGG, "method=hoyer_square", "epochs=500", "optim.milestones_of=500")  # paper_vgg19_hoyer's


@pytest.fixture
def results(tmp_path):
    for seed, acc in zip((42, 43, 44), (92.0, 93.0, 94.0)):  # mean 93, sample std 1
        write_summary(tmp_path, *VGG, "method=flipout", "sparsity=0.75", seed=seed, acc=acc, int8=acc - 0.5)
    write_summary(tmp_path, *VGG, "method=flipout", "sparsity=0.75", seed=45, acc=10.0, status="failed")  # left out
    for seed, acc in zip((42, 43), (93.0, 94.0)):  # sparsity ignored: dense is recorded at 0
        write_summary(tmp_path, *VGG, "method=dense", seed=seed, acc=acc)
    write_summary(tmp_path, *VGG, "method=global_magnitude", "sparsity=0.984375", seed=42, acc=90.0)
    write_summary(tmp_path, *VGG, "method=global_magnitude", "sparsity=0.984375", "epochs=10", seed=42, acc=80.0)
    write_summary(tmp_path, *HOYER, "method.lam=1e-7", seed=42, acc=92.0, achieved=0.96, outcome=True)
    for seed, acc in zip((0, 1), (90.0, 96.0)):
        write_summary(tmp_path, "experiment=quickstart", "method=random", "sparsity=0.9375", seed=seed, acc=acc)
    return tmp_path


def cell(cells, **where):
    rows = cells
    for k, v in where.items():
        rows = rows[rows[k] == v]
    assert len(rows) == 1, (where, rows)
    return rows.iloc[0]


def published(cells_or_runs):
    return reference.published_rows(reference_dir(), set(zip(cells_or_runs["model"], cells_or_runs["dataset"])))


def test_cells_aggregate_seeds_beside_the_published_value(results):
    runs = tables.load_runs(results / "runs")
    assert len(runs) == 11 and (runs["status"] == "failed").sum() == 1
    cells = reference.attach_reference(tables.aggregate(runs), published(runs))
    f = cell(cells, method="flipout", target_sparsity=0.75, model="vgg19")
    assert f["n_seeds"] == 3 and f["seeds"] == "42,43,44"
    assert f["final_mean"] == pytest.approx(93.0) and f["final_std"] == pytest.approx(1.0)
    assert f["best_mean"] == pytest.approx(94.0) and f["int8_mean"] == pytest.approx(92.5)
    assert f["paper_acc"] == pytest.approx(92.77) and f["paper_std"] == pytest.approx(0.08)
    assert f["diff"] == pytest.approx(93.0 - 92.77) and f["paper_source"] == "flipout_paper"
    d = cell(cells, method="dense", model="vgg19")
    assert d["final_mean"] == pytest.approx(93.5) and d["final_std"] == pytest.approx(math.sqrt(0.5))
    assert d["paper_acc"] == pytest.approx(93.58)
    gm = cells[(cells["method"] == "global_magnitude") & (cells["target_sparsity"] == 0.984375)]
    assert sorted(gm["epochs"]) == [10, 350] and set(gm["n_seeds"]) == {1} and gm["final_std"].isna().all()
    # only the run of the paper's protocol is the published cell; the 10-epoch one says why it is not
    assert cell(gm, epochs=350)["paper_acc"] == 93.21 and pd.isna(cell(gm, epochs=10)["paper_acc"])
    assert tuple(cell(gm, epochs=10)[["paper_status", "paper_note"]]) == ("not comparable", "epochs")
    assert gm["protocol"].nunique() == 2
    hs = cell(cells, method="hoyer_square", model="vgg19", n_seeds=1)
    assert hs["setting_label"] == "hoyer_square, method.lam=1e-07, schedule=none, schedule.rounding=reference"
    assert hs["achieved_mean"] == pytest.approx(0.96) and hs["epochs"] == 500
    assert hs["paper_acc"] == pytest.approx(93.13) and hs["paper_sparsity"] == pytest.approx(0.9608)
    assert hs["diff"] == pytest.approx(92.0 - 93.13)
    # published cells that no run covers are rows with n_seeds 0 (only for pairs that have runs), in the
    # protocol of the preset that reproduces them (the "99.9 %" column: 0.9990234375 for the periodic
    # methods, 0.999 for SNIP)
    miss = cell(cells, method="flipout", target_sparsity=0.9990234375, model="vgg19")
    assert miss["n_seeds"] == 0 and miss["paper_acc"] == pytest.approx(87.40) and miss["protocol"] == f["protocol"]
    assert cell(cells, method="snip", target_sparsity=0.999, model="vgg19")["paper_acc"] == pytest.approx(10.0)
    assert cell(cells, method="hoyer_square", paper_sparsity=0.9608)["protocol"] == hs["protocol"] != f["protocol"]
    assert not (cells["model"] == "resnet18").any()
    r = cell(cells, model="lenet300_100")
    assert r["final_mean"] == pytest.approx(93.0) and r["final_std"] == pytest.approx(math.sqrt(18))
    assert pd.isna(r["paper_acc"])


def test_report_writes_a_section_per_protocol_and_a_figure_each(results, capsys):
    main(["--results-dir", str(results), "--no-sweeps"])
    assert "11 runs" in capsys.readouterr().out
    md = (results / "tables" / "vgg19-cifar10.md").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads == ["## vgg19 on cifar10, 10 epochs, batch 128, fp32", "## vgg19 on cifar10, 350 epochs, batch 128, fp32",
                     "## vgg19 on cifar10, 500 epochs, batch 128, fp32, optim.milestones_of=500"]
    paper = md[md.index(heads[1]):md.index(heads[2])]
    # final accuracy, its 95 % interval (93 ± 4.302653 / sqrt(3)), no baseline at 75 %, best apart, int8, paper
    assert ("| flipout (schedule=periodic) | 75.00 % | 3 | 93.00 ± 1.00 | [90.52, 95.48] |  | 94.00 ± 1.00 |"
            " 92.50 ± 1.00 | 92.77 ± 0.08 | reproduced |") in paper
    assert "Every row: schedule.rounding=reference." in paper and "**missing**" in paper
    assert "| dense (schedule=periodic) | 0 % | 2 ⚠ | 93.50 ± 0.71 |" in paper  # fewer than 3 seeds: flagged
    # the overview: rows are settings, columns sparsities (0.999 and 0.9990234375 share the 99.90 % column)
    assert "| setting | 0 % | 75.00 % | 93.75 % | 98.44 % | 99.61 % | 99.90 % |" in paper
    assert "| flipout (schedule=periodic) |  | 93.00 ± 1.00 | **missing** (paper 92.78) |" in paper
    assert "- flipout (schedule=periodic) at 75.00 %: no global_magnitude run at sparsity 0.75" in paper
    short = md[md.index(heads[0]):md.index(heads[1])]
    assert "| global_magnitude | 98.44 % | 1 ⚠ | 80.00 |" in short and "not comparable: epochs" in short
    assert "at 96.08 %" in md[md.index(heads[2]):]  # Hoyer-Square beside its published point
    assert "| int8 |" not in (results / "tables" / "lenet300_100-mnist5k.md").read_text()
    # 9 runs of VGG19 (one failed, 36 s): 8 x 360 s + 36 s = 0.81 device-hours
    assert "Cost: 9 runs, 0.81 device-hours (cuda 0.81; sum of the runs' wall time)." in md
    csv = pd.read_csv(results / "tables" / "vgg19-cifar10.csv")
    assert {"final_mean", "final_std", "n_seeds", "paper_acc", "diff", "int8_mean", "protocol_label"} <= set(csv.columns)
    assert len(pd.read_csv(results / "tables" / "runs.csv")) == 11
    protocols = dict(zip(csv["epochs"], csv["protocol"]))
    png = results / "curves" / f"vgg19-cifar10-{protocols[350]}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert f"Figures: curves/vgg19-cifar10-{protocols[350]}.png." in paper
    points = pd.read_csv(png.with_suffix(".csv"))
    ours = points[(points["method"] == "flipout") & (points["kind"] == "target")]
    assert list(ours["sparsity"]) == [0.75] and list(ours["acc_mean"]) == [93.0] and list(ours["acc_std"]) == [1.0]
    assert {"dense", "published", "target"} == set(points["kind"])
    assert ((points[points["kind"] == "published"]["sparsity"] - 0.9990234375).abs() < 1e-6).any()
    assert set(pd.read_csv(results / "curves" / f"vgg19-cifar10-{protocols[500]}.csv")["kind"]) == {"outcome",
                                                                                                    "published"}
    assert (results / "curves" / f"vgg19-cifar10-{protocols[10]}.png").exists()
    assert len(list((results / "curves").glob("lenet300_100-mnist5k-*.png"))) == 1


def test_report_lists_missing_sweep_runs_with_their_command(results):
    r = make_report(results, sweeps=["paper_resnet18_dense"])
    assert r["missing"] == 3
    text = (results / "tables" / "missing.md").read_text()
    assert "## paper_resnet18_dense: 0 of its 3 jobs done" in text
    assert f"flipout-train -m +sweep=paper_resnet18_dense results_dir={results}" in text


def test_report_without_runs_says_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--results-dir", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1  # one line, the shared failure style
    assert err.startswith("flipout-report: error: --results-dir=")
    assert "has no runs/ folder: run a sweep first (e.g. flipout-train -m +sweep=tiny)" in err
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["--results-dir", str(tmp_path), "--sweeps", "nope"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("flipout-report: error: sweep='nope' is not a sweep preset: use one of")


def test_a_preset_that_cannot_be_composed_is_reported_not_fatal(results, monkeypatch):
    from flipout_repro.reporting import sweep_status as coverage

    (results / "sweeps").mkdir()
    (results / "sweeps" / "broken.yaml").write_text("hydra:\n  sweeper:\n    params:\n      method: nope\n")
    monkeypatch.setattr(coverage, "sweep_dir", lambda: results / "sweeps")
    monkeypatch.setattr(paper_identity, "reproducing_sweeps", lambda folder: {})  # the presets are elsewhere
    r = make_report(results)
    assert set(r["problems"]) == {"broken"} and "MissingConfigException" in r["problems"]["broken"]
    text = (results / "tables" / "missing.md").read_text()
    assert "## broken: cannot be composed here (MissingConfigException" in text
    assert (results / "tables" / "vgg19-cifar10.md").exists()


def test_short_labels_keep_what_tells_the_settings_of_a_protocol_apart():
    cells = pd.DataFrame({"model": "m", "dataset": "d", "protocol": ["p", "p", "p", "q"], "setting_label": [
        "flipout, budget=erk, schedule=cubic, schedule.every_steps=10",
        "flipout, budget=erk, schedule=cubic, schedule.every_steps=100",
        "global_magnitude, budget=erk, optim.milestones=[1, 2]", "rigl, budget=erk"]})
    out = tables.short_labels(cells)
    assert list(out["label"]) == ["flipout (schedule=cubic, schedule.every_steps=10)",
                                  "flipout (schedule=cubic, schedule.every_steps=100)",
                                  "global_magnitude (optim.milestones=[1, 2])", "rigl"]
    assert list(out["shared"]) == ["budget=erk"] * 4


def test_bf16_and_fp32_runs_are_two_protocols(tmp_path):
    for seed, acc in zip((42, 43), (92.0, 94.0)):
        write_summary(tmp_path, *VGG, "method=flipout", "sparsity=0.75", "precision=fp32", seed=seed, acc=acc)
        write_summary(tmp_path, *VGG, "method=flipout", "sparsity=0.75", "precision=bf16", seed=seed, acc=acc - 10)
    cells = tables.aggregate(tables.load_runs(tmp_path / "runs"))
    assert cell(cells, precision="fp32")["final_mean"] == 93.0 and cell(cells, precision="bf16")["final_mean"] == 83.0
    assert cells["protocol"].nunique() == 2
    make_report(tmp_path, sweeps=[])
    md = (tmp_path / "tables" / "vgg19-cifar10.md").read_text()
    assert "## vgg19 on cifar10, 350 epochs, batch 128, bf16" in md and "## vgg19 on cifar10, 350 epochs, batch 128, fp32" in md
    # the bf16 run is not the paper's (fp32) run: not comparable, with the key that differs
    assert "not comparable: precision" in md and "| 92.77 ± 0.08 | -0.77 |" not in md


def test_the_int8_column_names_the_settings_it_shows(tmp_path):
    for seed in (0, 1):
        run = write_summary(tmp_path, *VGG, "method=flipout", "sparsity=0.75", seed=seed, acc=93.0, int8=92.5)
        s = json.loads((run / "summary.json").read_text())
        s["quantization"]["settings"] = "minmax-x86-calib_all"
        (run / "summary.json").write_text(json.dumps(s))
    run = write_summary(tmp_path, "experiment=quickstart", "method=random", "sparsity=0.75", acc=90.0, int8=89.0)
    s = json.loads((run / "summary.json").read_text())
    s["quantization"] |= {"observer": "histogram", "backend": "x86", "calibration_batches": 32}  # before the key
    (run / "summary.json").write_text(json.dumps(s))
    make_report(tmp_path, sweeps=[])
    assert "| int8 (minmax-x86-calib_all) |" in (tmp_path / "tables" / "vgg19-cifar10.md").read_text()
    assert "| int8 (histogram-x86-calib_32b) |" in (tmp_path / "tables" / "lenet300_100-mnist5k.md").read_text()
    runs = pd.read_csv(tmp_path / "tables" / "runs.csv")
    assert set(runs["int8_settings"]) == {"minmax-x86-calib_all", "histogram-x86-calib_32b"}


def test_missing_md_details_only_the_sweeps_started(results):
    """The fixture's VGG19 runs of the paper's protocol are jobs of the paper presets: those presets are
    listed job by job; every other preset is named in one line."""
    r = make_report(results)
    text = (results / "tables" / "missing.md").read_text()
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    # its seed-45 run is of a paper_vgg19 setting but not a job of it: named, not counted as one
    assert heads == ["## paper_vgg19: 4 of its 75 jobs done; 1 more run of its settings on disk (seed 45: not in the"
                     " preset)", "## paper_vgg19_dense: 2 of its 3 jobs done",
                     "## paper_vgg19_hoyer: 1 of its 13 jobs done"]
    assert r["missing"] == 71 + 1 + 12
    assert ("Not started (no run on disk), not listed: airbench_dense, airbench_methods, dst_quickstart, force_quickstart, force_vgg19,"
            " force_vgg19_baselines, imp_quickstart, imp_quickstart_baselines, paper_densenet121," in text)
    assert "## Missing cells" in (results / "tables" / "vgg19-cifar10.md").read_text()
    assert "Missing cells" not in (results / "tables" / "lenet300_100-mnist5k.md").read_text()


def test_the_no_baseline_lines_name_the_protocol():
    cells = pd.DataFrame({"label": ["flipout"], "target_sparsity": [0.9], "protocol_label": ["lenet on mnist5k, 10 epochs"],
                          "base_note": [f"no {compare.DEFAULT_BASELINE} runs with this protocol"]})
    assert sections.no_baseline_lines(cells) == [
        "flipout at 90.00 %: no global_magnitude runs with this protocol (lenet on mnist5k, 10 epochs)"]
