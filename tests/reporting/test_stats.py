"""reporting/stats.py against published t tables, hand-computed intervals, and scipy where installed."""
import math

import pytest

from flipout_repro.reporting.stats import compare, mean_interval, t_cdf, t_quantile, versus_published

# t_{0.975, df} from the standard tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2), 6+ digits
T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 10: 2.228139, 20: 2.085963,
        30: 2.042272, 100: 1.983972}


@pytest.mark.parametrize("df, t", sorted(T975.items()))
def test_t_quantile_matches_the_table(df, t):
    assert t_quantile(0.975, df) == pytest.approx(t, abs=2e-6)
    assert t_quantile(0.025, df) == pytest.approx(-t, abs=2e-6)
    assert t_cdf(t, df) == pytest.approx(0.975, abs=1e-7)


def test_t_quantile_tends_to_the_normal_and_rejects_bad_input():
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    assert t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df > 0"):
        t_quantile(0.9, 0)


def test_against_scipy_where_installed():
    st = pytest.importorskip("scipy.stats")
    for df in (1, 1.5, 2, 2.42, 3, 7.3, 29, 30, 31, 250):
        for p in (0.6, 0.9, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(st.t.ppf(p, df), rel=1e-8)
    a, b = [92.0, 93.0, 94.5], [90.0, 90.5, 91.5, 88.0]
    r = st.ttest_ind(a, b, equal_var=False)
    d = compare(dict(enumerate(a)), {10 + i: v for i, v in enumerate(b)})
    se = (d.diff) / r.statistic
    assert d.hi - d.diff == pytest.approx(st.t.ppf(0.975, d.df) * se, rel=1e-8)


def test_mean_interval_by_hand():
    # 92, 93, 94: mean 93, s 1, half = 4.302653 * 1 / sqrt(3) = 2.484138
    lo, hi = mean_interval([92.0, 93.0, 94.0])
    assert lo == pytest.approx(93 - 2.484138, abs=1e-5) and hi == pytest.approx(93 + 2.484138, abs=1e-5)
    assert all(math.isnan(x) for x in mean_interval([92.0]))


def test_welch_by_hand():
    # a: 1, 2, 4 (mean 7/3, var 7/3); b: 0, 0.5, 1 (mean 0.5, var 1/4); different seeds -> Welch
    d = compare({1: 1.0, 2: 2.0, 3: 4.0}, {4: 0.0, 5: 0.5, 6: 1.0})
    va, vb = 7 / 9, 1 / 12  # var / n
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert d.kind == "welch" and d.diff == pytest.approx(7 / 3 - 0.5)
    assert d.df == pytest.approx(df) and df == pytest.approx(2.4237074, abs=1e-6)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    assert (d.lo, d.hi) == (pytest.approx(d.diff - half), pytest.approx(d.diff + half))
    # t_{0.975, 2.4237} checked independently: Simpson's rule on the t density from 0 to it gives 0.475
    q = t_quantile(0.975, df)
    assert q == pytest.approx(3.656460, abs=1e-5) and _simpson_t_mass(q, df) == pytest.approx(0.475, abs=1e-8)
    assert d.verdict == "within noise"


def _simpson_t_mass(q, df, n=20000):
    """P(0 < T < q) by Simpson's rule on the density (independent of stats.py's incomplete beta)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = [c * (1 + (q * i / n) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
    return q / n / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))


def test_paired_by_seed_by_hand_and_verdicts():
    # same seeds: differences 1, 1.5, 3 -> mean 11/6, s = sqrt(13/12), df 2
    d = compare({1: 1.0, 2: 2.0, 3: 4.0}, {1: 0.0, 2: 0.5, 3: 1.0})
    half = 4.302653 * math.sqrt(13 / 12) / math.sqrt(3)
    assert d.kind == "paired" and d.df == 2
    assert (d.lo, d.hi) == (pytest.approx(11 / 6 - half, abs=1e-5), pytest.approx(11 / 6 + half, abs=1e-5))
    better = compare({1: 93.0, 2: 94.0, 3: 95.0}, {1: 90.0, 2: 90.5, 3: 91.5})  # differences 3, 3.5, 3.5
    assert better.verdict == "better" and better.lo > 0
    assert compare({1: 90.0, 2: 90.5, 3: 91.5}, {1: 93.0, 2: 94.0, 3: 95.0}).verdict == "worse"
    one = compare({1: 93.0}, {1: 90.0, 2: 91.0})
    assert one.kind == "" and one.diff == pytest.approx(2.5) and one.verdict == "" and math.isnan(one.lo)


def test_versus_published():
    # our interval [90.52, 95.48] widened by 0.08 contains 92.77
    assert versus_published(93.0, 90.52, 95.48, 92.77, 0.08) == ("reproduced", pytest.approx(0.23))
    assert versus_published(93.0, 92.9, 93.1, 92.77, 0.08) == ("above", pytest.approx(0.23))
    assert versus_published(93.0, 92.9, 93.1, 92.77, 0.15) == ("reproduced", pytest.approx(0.23))
    assert versus_published(91.0, math.nan, math.nan, 92.0, 0.5) == ("below", pytest.approx(-1.0))
    status, gap = versus_published(math.nan, math.nan, math.nan, 92.0, 0.5)
    assert status == "missing" and math.isnan(gap)
