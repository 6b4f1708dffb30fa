"""The comparison with a baseline method on fake summaries: paired by seed, Welch, the verdicts in the
Markdown, the published-cell summary line, the forest plot and --baseline."""
import math

import pandas as pd
import pytest
from helpers import write_summary

from flipout_repro.cli.report import main
from flipout_repro.config.paths import reference_dir
from flipout_repro.reporting import compare, reference, tables
from flipout_repro.reporting.aggregate import make_report

Q = ("experiment=quickstart",)


def lenet(root, method, sparsity, seed, acc, *more, **kw):
    write_summary(root, *Q, f"method={method}", f"sparsity={sparsity}", *more, seed=seed, acc=acc, **kw)


@pytest.fixture
def runs(tmp_path):
    # three summaries per cell, seeds 42-44: flipout minus global_magnitude per seed 3, 3.5, 3.5
    for seed, fo, gm, rnd in zip((42, 43, 44), (93.0, 94.0, 95.0), (90.0, 90.5, 91.5), (90.0, 92.0, 94.0)):
        lenet(tmp_path, "flipout", 0.75, seed, fo, train_fraction=0.4 + seed / 1000)
        lenet(tmp_path, "global_magnitude", 0.75, seed, gm, train_fraction=0.5)
        lenet(tmp_path, "random", 0.75, seed + 10, rnd)  # other seeds: Welch
    lenet(tmp_path, "snip", 0.75, 42, 91.0, speedups=(0.5, 1.25))  # one seed
    lenet(tmp_path, "flipout", 0.9375, 42, 80.0)  # no baseline there
    return tmp_path


def cells_of(root, baseline="global_magnitude"):
    runs = tables.load_runs(root / "runs")
    ref = reference.published_rows(reference_dir(), set(zip(runs["model"], runs["dataset"])))
    return compare.attach_comparisons(reference.attach_reference(tables.aggregate(runs), ref), baseline)


def _ref():
    return reference_dir()


def one(cells, **where):
    for k, v in where.items():
        cells = cells[cells[k] == v]
    assert len(cells) == 1
    return cells.iloc[0]


def test_paired_welch_and_single_seed_comparisons(runs):
    cells = cells_of(runs)
    fo = one(cells, method="flipout", target_sparsity=0.75)
    # differences 3, 3.5, 3.5: mean 10/3, s = sqrt(1/12), half = 4.302653 * s / sqrt(3) = 0.717109
    assert fo["base_kind"] == "paired" and fo["base_diff"] == pytest.approx(10 / 3)
    assert fo["base_lo"] == pytest.approx(10 / 3 - 0.717109, abs=1e-5)
    assert fo["base_hi"] == pytest.approx(10 / 3 + 0.717109, abs=1e-5) and fo["verdict"] == "better"
    assert fo["final_ci_lo"] == pytest.approx(94 - 2.484138, abs=1e-5)  # 93, 94, 95: s 1
    rnd = one(cells, method="random")
    # 90, 92, 94 (var 4) vs 90, 90.5, 91.5 (var 7/12): Welch; df = (4/3+7/36)^2 / ((4/3)^2/2 + (7/36)^2/2)
    va, vb = 4 / 3, 7 / 36
    assert rnd["base_kind"] == "welch" and rnd["base_diff"] == pytest.approx(92 - 272 / 3)
    half = rnd["base_hi"] - rnd["base_diff"]
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    from flipout_repro.reporting.stats import t_quantile

    assert half == pytest.approx(t_quantile(0.975, df) * math.sqrt(va + vb)) and rnd["verdict"] == "within noise"
    snip = one(cells, method="snip")
    assert snip["base_diff"] == pytest.approx(91 - 272 / 3) and math.isnan(snip["base_lo"]) and snip["verdict"] == ""
    assert one(cells, method="global_magnitude")["verdict"] == "baseline"
    lone = one(cells, method="flipout", target_sparsity=0.9375)
    assert pd.isna(lone["base_diff"]) and lone["base_note"] == (
        "no global_magnitude run at sparsity 0.9375 with this protocol and layer budget (its sparsities: 0.75)")
    # another baseline: random; flipout's seeds differ from random's -> Welch
    other = one(cells_of(runs, "random"), method="flipout", target_sparsity=0.75)
    assert other["base_kind"] == "welch" and other["base_diff"] == pytest.approx(2.0)


def test_report_shows_verdicts_intervals_and_a_forest_plot(runs, capsys):
    main(["--results-dir", str(runs), "--no-sweeps"])
    assert "1 cells without a global_magnitude cell of their protocol" in capsys.readouterr().out
    md = (runs / "tables" / "lenet300_100-mnist5k.md").read_text()
    assert "| Δ vs global_magnitude [95 % CI] |" in md and "| best (own column) |" in md
    # quickstart's schedule.rounding=reference is every row's: said once under the heading
    assert "Every row: schedule.rounding=reference." in md
    fo = "flipout (schedule=periodic)"
    assert f"| {fo} | 75.00 % | 3 | 94.00 ± 1.00 | [91.52, 96.48] | +3.33 [+2.62, +4.05] p ✱ better |" in md
    assert "| random (schedule=periodic) | 75.00 % | 3 | 92.00 ± 2.00 |" in md and "within noise" in md
    assert "| snip (schedule=one_shot) | 75.00 % | 1 ⚠ | 91.00 | — | +0.33 (1 seed: no interval) |" in md
    assert f"| {fo} | 94.00 ± 1.00, Δ +3.33 ✱ | 80.00 |" in md  # the overview: settings x sparsities
    assert f"- {fo} at 93.75 %: no global_magnitude run at sparsity 0.9375 with this protocol" in md
    assert "Published cells" not in md  # the paper has no LeNet table
    # training compute as a fraction of dense: flipout's mean of 0.442, 0.443, 0.444; runs without it: blank
    assert "| train compute (× dense) |" in md and "| 0.443 | – / – |" in md and "| 0.5 | – / – |" in md
    assert "|  | 0.50x / 1.25x |" in md and "| CPU speed-up b1 / b64 |" in md  # flipout-bench --inference
    [png] = (runs / "curves").glob("lenet300_100-mnist5k-*-vs-global_magnitude.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    rows = pd.read_csv(png.with_suffix(".csv"))
    assert list(rows["method"]) == ["flipout", "random", "snip"] and list(rows["kind"].fillna("")) == ["paired", "welch", ""]
    assert rows.loc[0, "lo"] == pytest.approx(10 / 3 - 0.717109, abs=1e-5)
    csv = pd.read_csv(runs / "tables" / "lenet300_100-mnist5k.csv")
    assert {"final_ci_lo", "final_ci_hi", "base_diff", "base_lo", "base_hi", "verdict", "base_note"} <= set(csv.columns)
    main(["--results-dir", str(runs), "--no-sweeps", "--baseline", "random"])
    assert len(list((runs / "curves").glob("lenet300_100-mnist5k-*-vs-random.png"))) == 1
    assert "Δ vs random" in (runs / "tables" / "lenet300_100-mnist5k.md").read_text()
    main(["--results-dir", str(runs), "--no-sweeps", "--baseline", "hoyer_square"])
    md = (runs / "tables" / "lenet300_100-mnist5k.md").read_text()
    assert "No comparison: no cell here has a hoyer_square cell with its protocol" in md and "Δ vs" not in md
    assert "Not compared with hoyer_square:" in md
    assert ("- flipout (schedule=periodic) at 75.00 %, 93.75 %; global_magnitude (schedule=periodic) at 75.00 %;"
            " snip (schedule=one_shot) at 75.00 %; random (schedule=periodic) at 75.00 %: no hoyer_square runs with"
            " this protocol") in md


def test_published_summary_line(tmp_path):
    # VGG19 at 75 %: published flipout 92.77 ± 0.08, global magnitude 93.78 ± 0.24
    for seed, fo, gm in zip((42, 43, 44), (92.0, 93.0, 94.0), (90.0, 90.5, 91.5)):
        for method, acc in (("flipout", fo), ("global_magnitude", gm)):
            write_summary(tmp_path, "experiment=vgg19_cifar10", f"method={method}", "sparsity=0.75", seed=seed, acc=acc)
    make_report(tmp_path, sweeps=[])
    md = (tmp_path / "tables" / "vgg19-cifar10.md").read_text()
    n_pub = int(pd.read_csv(tmp_path / "tables" / "vgg19-cifar10.csv")["paper_acc"].notna().sum())
    assert f"**Published cells: {n_pub}; reproduced 1, missing {n_pub - 2}, above 0, below 1.**" in md
    assert "| 92.77 ± 0.08 | reproduced |" in md and "| 93.78 ± 0.24 | -3.11 |" in md
    # tables/published.md counts the same cells as the table's line, and names the table
    row = next(x for x in (tmp_path / "tables" / "published.md").read_text().splitlines() if x.startswith("| vgg19 |"))
    assert row == (f"| vgg19 | cifar10 | flipout_paper, hoyer_square_paper | {n_pub} | 1 | {n_pub - 2} | 0 | 1 |"
                   " vgg19-cifar10.md |")
    only_missing = compare.published_summary(pd.DataFrame({"paper_acc": [1.0, 2.0], "paper_status": ["missing"] * 2}))
    assert only_missing == "Published cells: 2; reproduced 0, missing 2, above 0, below 0 (all missing: no runs of these cells here)."


def test_the_baseline_cell_with_the_same_budget_is_taken(tmp_path):
    # global_magnitude at one sparsity with two budgets; each flipout cell is compared with its own budget's
    for seed in (0, 1, 2):
        for budget, gm, fo in (("erk", 96.0, 95.0), ("global", 90.0, 92.0)):
            lenet(tmp_path, "global_magnitude", 0.9, seed, gm + seed, f"budget={budget}")
            lenet(tmp_path, "flipout", 0.9, seed, fo + seed, f"budget={budget}")
    lenet(tmp_path, "flipout", 0.9, 0, 91.0, "budget=uniform")  # no baseline with this budget
    cells = cells_of(tmp_path)
    fo = cells[cells["method"] == "flipout"]
    diffs = sorted(fo["base_diff"].dropna().round(6))
    assert diffs == [-1.0, 2.0]  # erk: 95 - 96; global: 92 - 90 (the first baseline cell for both: -4 or -1)
    uniform = fo[fo["base_diff"].isna()].iloc[0]
    assert uniform["base_note"] == ("no global_magnitude runs with budget=uniform in this protocol (it has"
                                    " budget=erk; budget=global)")


def test_a_report_without_paper_runs_still_says_where_every_published_table_stands(runs, capsys):
    """Only LeNet runs (no paper table has a run): tables/published.md lists every paper table with all its
    published rows missing, and the report's output sums them up in one line."""
    ref = reference.load_reference(_ref())
    main(["--results-dir", str(runs), "--no-sweeps"])
    out = capsys.readouterr().out
    n = {pair: len(part) for pair, part in ref.groupby(["model", "dataset"])}
    assert (f"published cells: {sum(n.values())} in {len(n)} paper tables (0 with runs here); reproduced 0,"
            f" missing {sum(n.values())}, above 0, below 0 (see tables/published.md)") in out
    md = (runs / "tables" / "published.md").read_text()
    assert (f"| vgg19 | cifar10 | flipout_paper, hoyer_square_paper | {n[('vgg19', 'cifar10')]} | 0 |"
            f" {n[('vgg19', 'cifar10')]} | 0 | 0 | no run of this model on this data set here |") in md
    assert f"| wrn22_2 | cifar10 | rigl_paper | {n[('wrn22_2', 'cifar10')]} | 0 |" in md
    assert "lenet300_100" not in md  # no published numbers for it
