"""flipout-report on summaries written here: means and stds over seeds, the published value and the
difference, failed runs left out, the int8 column, missing paper cells, the figure and its points."""
import json
import math

import pandas as pd
import pytest

from flipout_repro.reporting import markdown, reference, tables
from helpers import write_summary
from flipout_repro.cli.report import main
from flipout_repro.reporting.aggregate import make_report


@pytest.fixture
def results(tmp_path):
    for seed, acc in zip((42, 43, 44), (92.0, 93.0, 94.0)):  # mean 93, sample std 1
        write_summary(tmp_path, "vgg19", "cifar10", "flipout", 0.75, seed, acc, int8=acc - 0.5)
    write_summary(tmp_path, "vgg19", "cifar10", "flipout", 0.75, 45, 10.0, status="failed")  # left out
    for seed, acc in zip((42, 43), (93.0, 94.0)):  # sparsity ignored: dense is recorded at 0
        write_summary(tmp_path, "vgg19", "cifar10", "dense", 0.0, seed, acc)
    write_summary(tmp_path, "vgg19", "cifar10", "global_magnitude", 0.984375, 42, 90.0)
    write_summary(tmp_path, "vgg19", "cifar10", "global_magnitude", 0.984375, 42, 80.0, epochs=10)  # other setting
    write_summary(tmp_path, "vgg19", "cifar10", "hoyer_square", 0.9375, 42, 92.0, knobs={"lam": 1e-7},
                  achieved=0.96, outcome=True)
    for seed, acc in zip((0, 1), (90.0, 96.0)):
        write_summary(tmp_path, "lenet300_100", "mnist5k", "random", 0.9375, seed, acc)
    return tmp_path


def cell(cells, **where):
    rows = cells
    for k, v in where.items():
        rows = rows[rows[k] == v]
    assert len(rows) == 1, (where, rows)
    return rows.iloc[0]


def test_cells_aggregate_seeds_beside_the_published_value(results):
    runs = tables.load_runs(results / "runs")
    assert len(runs) == 11 and (runs["status"] == "failed").sum() == 1
    cells = reference.attach_reference(tables.aggregate(runs), reference.load_reference(tables_ref()))
    f = cell(cells, method="flipout", target_sparsity=0.75, model="vgg19")
    assert f["n_seeds"] == 3 and f["seeds"] == "42,43,44"
    assert f["final_mean"] == pytest.approx(93.0) and f["final_std"] == pytest.approx(1.0)
    assert f["best_mean"] == pytest.approx(94.0) and f["int8_mean"] == pytest.approx(92.5)
    assert f["paper_acc"] == pytest.approx(92.77) and f["paper_std"] == pytest.approx(0.08)
    assert f["diff"] == pytest.approx(93.0 - 92.77)
    d = cell(cells, method="dense", model="vgg19")
    assert d["final_mean"] == pytest.approx(93.5) and d["final_std"] == pytest.approx(math.sqrt(0.5))
    assert d["paper_acc"] == pytest.approx(93.58)
    gm = cells[(cells["method"] == "global_magnitude") & (cells["target_sparsity"] == 0.984375)]
    assert sorted(gm["epochs"]) == [10, 350] and set(gm["n_seeds"]) == {1} and gm["final_std"].isna().all()
    assert set(gm["paper_acc"]) == {93.21}  # both settings are shown beside the paper
    hs = cell(cells, method="hoyer_square", model="vgg19", n_seeds=1)
    assert hs["variant"] == "lam=1e-07" and hs["achieved_mean"] == pytest.approx(0.96)
    assert hs["paper_acc"] == pytest.approx(93.13) and hs["paper_sparsity"] == pytest.approx(0.9608)
    assert hs["diff"] == pytest.approx(92.0 - 93.13)
    # published cells that no run covers are rows with n_seeds 0 (only for pairs that have runs)
    # the "99.9 %" column: 0.9990234375 for the periodic methods, 0.999 for SNIP (results/reference)
    miss = cell(cells, method="flipout", target_sparsity=0.9990234375, model="vgg19")
    assert miss["n_seeds"] == 0 and miss["paper_acc"] == pytest.approx(87.40)
    assert cell(cells, method="snip", target_sparsity=0.999, model="vgg19")["paper_acc"] == pytest.approx(10.0)
    assert not (cells["model"] == "resnet18").any()
    r = cell(cells, model="lenet300_100")
    assert r["final_mean"] == pytest.approx(93.0) and r["final_std"] == pytest.approx(math.sqrt(18))
    assert pd.isna(r["paper_acc"])


def tables_ref():
    from flipout_repro.config.paths import reference_dir

    return reference_dir()


def test_report_writes_tables_and_a_figure(results, capsys):
    main(["--results-dir", str(results), "--no-sweeps"])
    assert "11 runs" in capsys.readouterr().out
    md = (results / "tables" / "vgg19-cifar10.md").read_text()
    # final accuracy, its 95 % interval (93 ± 4.302653 / sqrt(3)), no baseline at 75 %, best apart, int8, paper
    row = ("| flipout |  | 75.00 % |  | 3 | 93.00 ± 1.00 | [90.52, 95.48] |  | 94.00 ± 1.00 | 92.50 ± 1.00 |"
           " 92.77 ± 0.08 | reproduced | 350 |")
    assert row in md
    assert "| int8 |" in md and "**missing**" in md and "at 96.08 %" in md
    assert "| dense |  | 0 % |  | 2 ⚠ | 93.50 ± 0.71 |" in md  # fewer than 3 seeds: flagged
    assert "| int8 |" not in (results / "tables" / "lenet300_100-mnist5k.md").read_text()
    # 9 runs of VGG19 (one failed, 36 s): 8 x 360 s + 36 s = 0.81 device-hours
    assert "Cost: 9 runs, 0.81 device-hours (cuda 0.81; sum of the runs' wall time)." in md
    csv = pd.read_csv(results / "tables" / "vgg19-cifar10.csv")
    assert {"final_mean", "final_std", "n_seeds", "paper_acc", "diff", "int8_mean"} <= set(csv.columns)
    assert len(pd.read_csv(results / "tables" / "runs.csv")) == 11
    png = results / "curves" / "vgg19-cifar10.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    points = pd.read_csv(results / "curves" / "vgg19-cifar10.csv")
    ours = points[(points["method"] == "flipout") & (points["kind"] == "target")]
    assert list(ours["sparsity"]) == [0.75] and list(ours["acc_mean"]) == [93.0] and list(ours["acc_std"]) == [1.0]
    assert {"dense", "published", "outcome"} <= set(points["kind"])
    assert ((points[points["kind"] == "published"]["sparsity"] - 0.9990234375).abs() < 1e-6).any()
    assert (results / "curves" / "lenet300_100-mnist5k.png").stat().st_size > 10_000


def test_report_lists_missing_sweep_runs_with_their_command(results):
    r = make_report(results, sweeps=["paper_resnet18_dense"])
    assert r["missing"] == 3
    text = (results / "tables" / "missing.md").read_text()
    assert "## paper_resnet18_dense: 0 of 3 runs done" in text
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
    r = make_report(results)
    assert set(r["problems"]) == {"broken"} and "MissingConfigException" in r["problems"]["broken"]
    text = (results / "tables" / "missing.md").read_text()
    assert "## broken: cannot be composed here (MissingConfigException" in text
    assert (results / "tables" / "vgg19-cifar10.md").exists()


def test_setting_labels_tell_every_setting_apart_and_variants_skip_mirrored_defaults():
    import pandas as pd

    from flipout_repro.reporting.tables import _variant, setting_labels

    periodic = {"schedule._target_": "flipout_repro.sparsity.schedule.Periodic", "schedule.rate": "0.5", "epochs": "40"}
    cubic = {"schedule._target_": "flipout_repro.sparsity.schedule.Cubic", "schedule.end": "0.5", "schedule.epoch": "None",
             "epochs": "40"}
    cells = pd.DataFrame([
        dict(model="m", dataset="d", method="flipout", variant="", setting="A", flat=periodic),
        dict(model="m", dataset="d", method="flipout", variant="", setting="B", flat={**cubic, "schedule.every_steps": "10"}),
        dict(model="m", dataset="d", method="flipout", variant="", setting="C", flat={**cubic, "schedule.every_steps": "100"}),
    ])
    assert list(setting_labels(cells)) == ["schedule=Periodic", "schedule=Cubic, schedule.every_steps=10",
                                           "schedule=Cubic, schedule.every_steps=100"]
    # defaults that refer to other keys are resolved against the run's own config
    knobs = {"scope": "global", "s_init": -3200.0, "s_weight_decay": None, "optim_weight_decay": 0.0005}
    run_cfg = {"optim": {"weight_decay": 0.0005}, "dataset": {"name": "cifar100"}}
    assert _variant("str", knobs, run_cfg) == ""  # ${optim.weight_decay}
    assert _variant("str", {**knobs, "optim_weight_decay": 0.0}, run_cfg) == "optim_weight_decay=0.0"
    assert _variant("str", {**knobs, "s_init": -5.0}, run_cfg) == "s_init=-5.0"  # the old default: a variant now
    force = {"scope": "global", "steps": 300, "mode": "exp", "batches": 10, "loss": "cross_entropy"}
    assert _variant("force", force, run_cfg) == ""  # ${paper_batches:${dataset.name}} = 10 on CIFAR-100
    assert _variant("force", {**force, "batches": 1}, run_cfg) == "batches=1"
    assert _variant("str", {**knobs, "optim_weight_decay": 0.0}) == ""  # no config to resolve against


def test_bf16_and_fp32_runs_never_average(tmp_path):
    for seed, acc in zip((42, 43), (92.0, 94.0)):
        write_summary(tmp_path, "vgg19", "cifar10", "flipout", 0.75, seed, acc, precision="fp32")
        write_summary(tmp_path, "vgg19", "cifar10", "flipout", 0.75, seed, acc - 10, precision="bf16")
    cells = tables.aggregate(tables.load_runs(tmp_path / "runs"))
    assert cell(cells, precision="fp32")["final_mean"] == 93.0 and cell(cells, precision="bf16")["final_mean"] == 83.0
    table = markdown.markdown_table(cells.assign(paper_acc=math.nan, paper_std=math.nan, paper_sparsity=math.nan))
    assert "| precision |" in table and "| fp32 |" in table and "| bf16 |" in table


def test_the_int8_column_names_the_settings_it_shows(tmp_path):
    for seed in (0, 1):
        write_summary(tmp_path, "vgg19", "cifar10", "flipout", 0.75, seed, 93.0, int8=92.5)
        q = tmp_path.glob(f"runs/vgg19-cifar10/flipout/**/seed_{seed}/summary.json")
        path = next(q)
        s = json.loads(path.read_text())
        s["quantization"]["settings"] = "minmax-x86-calib_all"
        path.write_text(json.dumps(s))
    write_summary(tmp_path, "lenet300_100", "mnist5k", "random", 0.75, 0, 90.0, int8=89.0)
    path = next(tmp_path.glob("runs/lenet300_100-mnist5k/**/summary.json"))
    s = json.loads(path.read_text())
    s["quantization"] |= {"observer": "histogram", "backend": "x86", "calibration_batches": 32}  # before the key
    path.write_text(json.dumps(s))
    make_report(tmp_path, sweeps=[])
    assert "| int8 (minmax-x86-calib_all) |" in (tmp_path / "tables" / "vgg19-cifar10.md").read_text()
    assert "| int8 (histogram-x86-calib_32b) |" in (tmp_path / "tables" / "lenet300_100-mnist5k.md").read_text()
    runs = pd.read_csv(tmp_path / "tables" / "runs.csv")
    assert set(runs["int8_settings"]) == {"minmax-x86-calib_all", "histogram-x86-calib_32b"}


def test_missing_md_details_only_the_sweeps_started(results):
    """No run of any preset on disk (the fixture's runs belong to none): every preset is named in one line,
    none is listed job by job, and nothing is counted missing."""
    r = make_report(results)
    text = (results / "tables" / "missing.md").read_text()
    assert r["missing"] == 0 and "No sweep preset started yet." in text and "\n## " not in text
    assert "Not started (no run on disk), not listed: dst_quickstart, paper_densenet121," in text
    assert "Missing cells" not in (results / "tables" / "vgg19-cifar10.md").read_text()
