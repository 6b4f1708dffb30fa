"""Small exact statistics for the report, without scipy: Student-t quantiles, the 95 % interval of a mean,
the difference of two cells (Welch, or paired by seed) and the verdicts the tables print.

The t distribution's CDF is 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2) (I: the regularized
incomplete beta function, evaluated by its continued fraction, Numerical Recipes 3rd ed. section 6.4);
its quantile is found by bisection. Exact to ~1e-10, for any real df > 0 (Welch's df is not an integer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

LEVEL = 0.95


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > 1e-300 else tiny)
    h = d
    for m in range(1, 1000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (e.g. 0.975, 2 -> 4.3027)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; nan for one value)."""
    n = len(values)
    m = sum(values) / n
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The Student-t interval of the mean, mean ± t_{(1+level)/2, n-1} s / sqrt(n); (nan, nan) if n < 2."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    m, s = mean_std(values)
    half = t_quantile((1 + level) / 2, n - 1) * s / math.sqrt(n)
    return m - half, m + half


@dataclass(frozen=True)
class Difference:
    """``a`` minus ``b``: the difference of the means, its interval, the test's df and how it was paired."""
    diff: float
    lo: float
    hi: float
    df: float
    kind: str  # "paired" (by seed), "welch", or "" (too few seeds for an interval)

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the interval excludes zero, "within noise" when not, "" without one."""
        if math.isnan(self.lo):
            return ""
        return "better" if self.lo > 0 else "worse" if self.hi < 0 else "within noise"


def compare(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Difference:
    """Mean of ``a`` minus mean of ``b`` (seed -> accuracy) with its interval.

    Paired by seed (a t interval of the per-seed differences, df n-1) when both have the same seeds,
    at least two; else Welch's interval with the Welch-Satterthwaite df (both need two seeds).
    """
    xa, xb = list(a.values()), list(b.values())
    diff = mean_std(xa)[0] - mean_std(xb)[0]
    if set(a) == set(b) and len(a) >= 2:
        d = [a[k] - b[k] for k in sorted(a)]
        lo, hi = mean_interval(d, level)
        return Difference(diff, lo, hi, len(d) - 1.0, "paired")
    if len(xa) < 2 or len(xb) < 2:
        return Difference(diff, math.nan, math.nan, math.nan, "")
    va, vb = mean_std(xa)[1] ** 2 / len(xa), mean_std(xb)[1] ** 2 / len(xb)
    se = math.sqrt(va + vb)
    if se == 0:  # both without spread: the difference is exact
        return Difference(diff, diff, diff, math.inf, "welch")
    df = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
    half = t_quantile((1 + level) / 2, df) * se
    return Difference(diff, diff - half, diff + half, df, "welch")


def versus_published(mean: float, lo: float, hi: float, paper: float, paper_std: float) -> tuple[str, float]:
    """("reproduced", gap) when ``paper`` lies in [lo, hi] widened by the published std on each side,
    else ("above" | "below", gap): gap is our mean minus the published mean; ("missing", nan) without runs.

    A single seed has no interval: its interval is the point itself (still widened by the published std).
    """
    if mean is None or math.isnan(mean):
        return "missing", math.nan
    if math.isnan(lo):
        lo = hi = mean
    widen = 0.0 if paper_std is None or math.isnan(paper_std) else paper_std
    gap = mean - paper
    if lo - widen <= paper <= hi + widen:
        return "reproduced", gap
    return ("above" if gap > 0 else "below"), gap
