"""Ranks of the settings at each sparsity with their bootstrap intervals, and the smallest difference the
seeds can detect: hand-computed on small tables of finals, then end to end through flipout-report on
summaries written here (the Ranks subsection and tables/ranks.csv, and when they are absent)."""
import math

import numpy as np
import pandas as pd
import pytest

from flipout_repro.reporting import ranks
from flipout_repro.reporting.aggregate import make_report
from flipout_repro.reporting.stats import t_quantile
from helpers import write_summary

QUICK = ("experiment=quickstart", "epochs=2")
SEEDS = (0, 1, 2, 3, 4, 5)
# three settings x six seeds; per seed A - B = 1, 2, 1, 2, 1, 2; A - C = 3 every seed; B - C = 2, 1, 2, 1, 2,
# 1: A is above B and B above C on every seed, so on every resample too
A = (93.0, 94.0) * 3
B = (92.0,) * 6
C = (90.0, 91.0) * 3
# std of the paired differences: A - B and B - C: sqrt(6 * 0.5^2 / 5) = sqrt(0.3); A - C: 0; median sqrt(0.3)
SD = math.sqrt(0.3)


def test_a_setting_above_on_every_seed_has_its_rank_on_every_resample():
    rank, lo, hi = ranks.bootstrap_ranks(np.array([A, B, C]))
    assert list(rank) == [1, 2, 3] and list(lo) == [1, 2, 3] and list(hi) == [1, 2, 3]
    rank, lo, hi = ranks.bootstrap_ranks(np.array([C, A, B]))  # the order of the rows changes nothing
    assert list(rank) == [3, 1, 2] and list(lo) == [3, 1, 2] and list(hi) == [3, 1, 2]


def test_the_interval_holds_the_ranks_that_come_up_in_more_than_2_5_percent_of_the_resamples():
    # B - C per seed: +1, +1, +1, -1 (mean +0.5: B second). A resample draws seed 3 k times of 4 (k ~ Bin(4,
    # 1/4)); B - C = (4 - 2k) / 4: B above C for k <= 1 (P = 0.738), tied for k = 2 (both 2.5, P = 0.211), below
    # for k >= 3 (P = 4 * 3/4^4 + 1/4^4 = 0.0508 > 0.025): both intervals [2, 3]; A is above both on every seed
    b, c = (92.0, 92.0, 92.0, 91.0), (91.0, 91.0, 91.0, 92.0)
    rank, lo, hi = ranks.bootstrap_ranks(np.array([A[:4], b, c]))
    assert list(rank) == [1, 2, 3] and list(lo) == [1, 2, 2] and list(hi) == [1, 3, 3]
    # two seeds, B - C = +1, -3: of the resamples {0, 0}, {0, 1}, {1, 0}, {1, 1} only the first puts B above C
    # (P = 1/4): B's mean is the lower one, its interval holds both places (under A: [2, 3])
    rank, lo, hi = ranks.bootstrap_ranks(np.array([[92.0, 90.0], [91.0, 93.0]]))
    assert list(rank) == [2, 1] and list(lo) == [1, 1] and list(hi) == [2, 2]
    rank, lo, hi = ranks.bootstrap_ranks(np.array([A[:2], [92.0, 90.0], [91.0, 93.0]]))
    assert list(rank) == [1, 3, 2] and list(lo) == [1, 2, 2] and list(hi) == [1, 3, 3]


def test_tied_means_share_the_average_of_their_places_and_a_report_is_reproducible():
    assert list(ranks.average_ranks(np.array([90.0, 92.0, 92.0, 91.0]))) == [4, 1.5, 1.5, 3]
    assert list(ranks.average_ranks(np.array([0.1 + 0.2, 0.3]))) == [1.5, 1.5]  # floating-point noise: a tie
    values = np.random.default_rng(5).normal(90, 0.3, size=(6, 20))
    first, again = ranks.bootstrap_ranks(values), ranks.bootstrap_ranks(values)
    assert all((x == y).all() for x, y in zip(first, again))
    # the generator's seed is what makes it so: with few resamples, another seed moves some interval's end
    few = ranks.bootstrap_ranks(values, resamples=40)
    assert all((x == y).all() for x, y in zip(few, ranks.bootstrap_ranks(values, resamples=40)))
    assert not all((x == y).all() for x, y in zip(few, ranks.bootstrap_ranks(values, resamples=40, seed=1)))


def test_the_smallest_detectable_difference_is_that_of_a_paired_t_test():
    assert ranks.paired_spread(np.array([A, B, C])) == pytest.approx(SD)
    # (t(0.975, 5) + t(0.80, 5)) * sd / sqrt(6) = (2.570582 + 0.919544) * sqrt(0.3 / 6) = 0.780416 (t tables)
    expected = (t_quantile(0.975, 5) + t_quantile(0.80, 5)) * SD / math.sqrt(6)
    assert ranks.mde(6, SD) == pytest.approx(expected, rel=1e-12)
    assert ranks.mde(6, SD) == pytest.approx(0.780416, abs=1e-6)
    assert math.isnan(ranks.mde(1, SD)) and math.isnan(ranks.paired_spread(np.array([A[:1], B[:1]])))
    # 20 seeds: (2.093024 + 0.860951) / sqrt(20) = 0.660529 per point of spread (t tables)
    assert ranks.mde(20, 1.0) == pytest.approx(0.660529, abs=1e-6)
    assert ranks.mde_line(20, 0.2149, 0.32, 15).startswith("with 20 seeds, differences above 0.21 points are detectable"
                                                       " (80 % power")


@pytest.fixture
def results(tmp_path):
    for method, accs in (("global_magnitude", A), ("snip", B), ("random", C)):
        for seed, acc in zip(SEEDS, accs):
            write_summary(tmp_path, *QUICK, f"method={method}", "sparsity=0.9", seed=seed, acc=acc)
    write_summary(tmp_path, *QUICK, "method=random", "sparsity=0.9", seed=6, acc=50.0)  # not shared: left out
    for seed in SEEDS:  # dense is never ranked
        write_summary(tmp_path, *QUICK, "method=dense", seed=seed, acc=99.0)
    # at 75 %: three seeds in common, ranked without an interval; global_magnitude - snip = 1, 2, 1
    for method, accs in (("global_magnitude", (95.0, 96.0, 95.0)), ("snip", (94.0, 94.0, 94.0))):
        for seed, acc in zip(SEEDS, accs):
            write_summary(tmp_path, *QUICK, f"method={method}", "sparsity=0.75", seed=seed, acc=acc)
    # at 50 %: two settings without a seed in common, not ranked
    write_summary(tmp_path, *QUICK, "method=global_magnitude", "sparsity=0.5", seed=0, acc=95.0)
    write_summary(tmp_path, *QUICK, "method=snip", "sparsity=0.5", seed=1, acc=94.0)
    write_summary(tmp_path, *QUICK, "method=snip", "sparsity=0.5", seed=2, acc=94.5)
    return tmp_path


def test_the_report_ranks_the_settings_of_each_sparsity(results):
    written = make_report(results, sweeps=[])["files"]
    assert results / "tables" / "ranks.csv" in written
    md = (results / "tables" / "lenet300_100-mnist5k.md").read_text()
    part = md[md.index("### Ranks"):]
    assert "Ranks (under a protocol's table" in md  # the file's header explains them
    assert ("**90.00 %**: 3 settings on the 6 seeds they all ran (the other seeds of 1 setting left out); with 6"
            " seeds, differences above 0.78 points are detectable (80 % power, paired t-test at 5 % two-sided; sd of"
            " the paired differences 0.55, the median over 3 pairs of settings).\n") in part
    # random's seed 6 (50.00) is not among the shared seeds: its mean here is that of seeds 0-5
    assert ("| rank [95 % interval] | setting | final test acc on those seeds, mean ± std |\n|---|---|---|\n"
            "| 1 [1, 1] | global_magnitude (schedule=periodic) | 93.50 ± 0.55 |\n"
            "| 2 [2, 2] | snip (schedule=one_shot) | 92.00 ± 0.00 |\n"
            "| 3 [3, 3] | random (schedule=periodic) | 90.50 ± 0.55 |") in part
    # three seeds: (t(0.975, 2) + t(0.80, 2)) * sqrt(1/3) / sqrt(3) = (4.302653 + 1.060660) / 3 = 1.787771
    assert ("**75.00 %**: 2 settings on the 3 seeds they all ran; with 3 seeds, differences above 1.79 points are"
            " detectable (80 % power, paired t-test at 5 % two-sided; sd of the paired differences 0.58, the median"
            " over 1 pair of settings). No interval on the ranks: fewer than 6 seeds.\n\n"
            "| rank | setting | final test acc on those seeds, mean ± std |\n|---|---|---|\n"
            "| 1 | global_magnitude (schedule=periodic) | 95.33 ± 0.58 |\n"
            "| 2 | snip (schedule=one_shot) | 94.00 ± 0.00 |") in part
    assert ("**50.00 %**: not ranked: the 2 settings share no seed (fewest: global_magnitude (schedule=periodic),"
            " 1 seed).") in part
    assert part.index("**50.00 %**") < part.index("**75.00 %**") < part.index("**90.00 %**")
    assert "dense" not in part
    csv = pd.read_csv(results / "tables" / "ranks.csv", dtype={"paired_seeds": str})
    assert list(csv.columns) == ranks.RANK_COLUMNS
    assert list(csv["target_sparsity"]) == [0.75] * 2 + [0.9] * 3
    at75, at90 = csv[csv["target_sparsity"] == 0.75], csv[csv["target_sparsity"] == 0.9]
    assert list(at90["method"]) == ["global_magnitude", "snip", "random"]
    assert list(at90["rank"]) == [1, 2, 3] and list(at90["rank_lo"]) == [1, 2, 3] and list(at90["rank_hi"]) == [1, 2, 3]
    assert list(at90["paired_mean"]) == [93.5, 92.0, 90.5] and set(at90["paired_seeds"]) == {"0,1,2,3,4,5"}
    assert set(at90["n_paired"]) == {6} and set(at90["n_settings"]) == {3}
    assert at90["sd_diff"].iloc[0] == pytest.approx(SD, abs=1e-6)
    assert at90["mde"].iloc[0] == pytest.approx(0.780416, abs=1e-5)
    assert list(at75["rank"]) == [1, 2] and at75[["rank_lo", "rank_hi"]].isna().all().all()
    assert list(at75["paired_seeds"]) == ["0,1,2"] * 2
    assert at75["mde"].iloc[0] == pytest.approx(1.787771, abs=1e-5)
    assert set(csv["axes"]) == {"budget=global, pattern=unstructured"}


def test_no_ranks_without_two_settings_sharing_two_seeds(tmp_path):
    for seed, acc in zip(SEEDS, A):  # one setting alone at 90 %
        write_summary(tmp_path, *QUICK, "method=global_magnitude", "sparsity=0.9", seed=seed, acc=acc)
    write_summary(tmp_path, *QUICK, "method=snip", "sparsity=0.5", seed=0, acc=94.0)  # one seed in common
    write_summary(tmp_path, *QUICK, "method=global_magnitude", "sparsity=0.5", seed=0, acc=95.0)
    write_summary(tmp_path, *QUICK, "method=global_magnitude", "sparsity=0.5", seed=1, acc=95.0)
    for seed in (0, 1):
        # beside global_magnitude at 90 %, a method whose sparsity is an outcome (its target recorded at 90 %);
        # beside dense, random at 0 %: same protocol, budget and pattern, not ranked together (compare.py
        # compares neither)
        write_summary(tmp_path, *QUICK, "method=hoyer_square", "sparsity=0.9", seed=seed, acc=91.0, achieved=0.9,
                      outcome=True)
        write_summary(tmp_path, *QUICK, "method=dense", seed=seed, acc=98.0)
        write_summary(tmp_path, *QUICK, "method=random", "sparsity=0", seed=seed, acc=97.0)
    written = make_report(tmp_path, sweeps=[])["files"]
    md = (tmp_path / "tables" / "lenet300_100-mnist5k.md").read_text()
    assert "Ranks" not in md and "not ranked" not in md
    assert not (tmp_path / "tables" / "ranks.csv").exists() and tmp_path / "tables" / "ranks.csv" not in written


def test_each_layer_budget_is_ranked_apart_and_named_where_a_protocol_has_several(tmp_path):
    # at 90 %: global_magnitude and random with the global budget, and with ERK: two groups, as compare.py
    # pairs cells with their baseline; with ERK random is above on every seed
    for budget, accs in (("global", (A, C)), ("erk", (C, A))):
        for method, acc in zip(("global_magnitude", "random"), accs):
            for seed, a in zip(SEEDS, acc):
                write_summary(tmp_path, *QUICK, f"method={method}", f"budget={budget}", "sparsity=0.9", seed=seed,
                              acc=a)
    make_report(tmp_path, sweeps=[])
    md = (tmp_path / "tables" / "lenet300_100-mnist5k.md").read_text()
    part = md[md.index("### Ranks"):]
    erk, glob = part.index("**90.00 %, budget=erk, pattern=unstructured**"), \
        part.index("**90.00 %, budget=global, pattern=unstructured**")
    assert "| 1 [1, 1] | random (budget=erk) |" in part[erk:glob]
    assert "| 1 [1, 1] | global_magnitude |" in part[glob:]  # the method's own budget: not in its label
    csv = pd.read_csv(tmp_path / "tables" / "ranks.csv")
    assert len(csv) == 4 and set(csv["n_settings"]) == {2}
    top = csv[csv["rank"] == 1].set_index("axes")["method"].to_dict()
    assert top == {"budget=erk, pattern=unstructured": "random",
                   "budget=global, pattern=unstructured": "global_magnitude"}
