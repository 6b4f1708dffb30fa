"""Ranks of the settings at each sparsity, with intervals, and the smallest difference the seeds can detect.

The settings ranked together are those compare.py compares with one baseline cell: the cells of one
protocol, layer budget and pattern whose sparsities are one column of the tables (within SAME_SPARSITY);
dense cells and the methods whose sparsity is an outcome are left out, as there. Every number is the
final-epoch test accuracy over the seeds that **all** the settings of the group ran (the shared seeds):

- **rank**: 1 for the highest mean over the shared seeds; tied means share the average of their places
  (two settings tied for the top: 1.5 each).
- **95 % interval of the rank** (from MIN_INTERVAL_SEEDS shared seeds): a paired bootstrap over the shared
  seeds. Each of RESAMPLES resamples draws n of the n seeds with replacement (the same draw for every
  setting: the seed's shared part, initialisation and data order, stays paired), recomputes each setting's
  mean and ranks them; the interval is the 2.5 % and 97.5 % quantiles of a setting's ranks (numpy's
  ``inverted_cdf``: ranks that occurred). The generator is numpy's default one with the fixed seed
  GENERATOR_SEED, started afresh per group: a report is reproducible, and a group's interval does not
  depend on what else is in the report. Each interval is its setting's own, not a joint statement.
- **smallest detectable difference** (MDE) of a paired t-test at 5 % two-sided with 80 % power on n shared
  seeds: (t(0.975, n − 1) + t(0.80, n − 1)) · sd_d / √n, with sd_d the median, over every pair of settings of
  the group, of the sample std (ddof 1) of their per-seed differences. The sum of the two quantiles is the
  usual normal-shift approximation of the power of the t-test (slightly optimistic for very few seeds).

With fewer than MIN_INTERVAL_SEEDS shared seeds the ranks have no interval: the bootstrap cannot be trusted
on so few (with 2 seeds it has three distinct resamples; a setting below another on every seed is below it on
every resample, an order a sign test confirms at 5 % only from 6 seeds on). A group of two settings or more
whose settings share fewer than two seeds is not ranked (no paired spread either): ``unranked`` says so and
which setting has the fewest seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flipout_repro.config.identity import key_words
from flipout_repro.reporting.compare import SAME_SPARSITY, flat_shared
from flipout_repro.reporting.sections import fmt_sparsity
from flipout_repro.reporting.stats import LEVEL, t_quantile

RESAMPLES = 10_000
GENERATOR_SEED = 0
#: Fewer shared seeds than this: ranks without an interval. A setting below another on all n seeds is below
#: it on every resample, an interval that excludes the swap; a sign test gives that pattern p = 2^(1 − n),
#: under 5 % only from n = 6.
MIN_INTERVAL_SEEDS = 6
POWER = 0.80
#: Rounded to this many decimals before ranking, so means equal but for floating-point noise tie.
TIE_DECIMALS = 9
RANK_COLUMNS = ["model", "dataset", "protocol", "protocol_label", "axes", "target_sparsity", "method", "setting_label",
                "hash", "n_settings", "n_paired", "paired_seeds", "paired_mean", "paired_std", "rank", "rank_lo",
                "rank_hi", "sd_diff", "mde"]


def average_ranks(means: np.ndarray) -> np.ndarray:
    """Ranks of the rows of ``means`` (settings x resamples, or settings), 1 for the highest, tied values
    sharing the average of their places."""
    m = np.round(np.asarray(means, dtype=float), TIE_DECIMALS)
    above = (m[None, :] > m[:, None]).sum(axis=1)  # [i]: how many settings are strictly above setting i
    tied = (m[None, :] == m[:, None]).sum(axis=1)  # including itself
    return 1.0 + above + (tied - 1) / 2.0


def bootstrap_ranks(values: np.ndarray, resamples: int = RESAMPLES, seed: int = GENERATOR_SEED
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank, interval low, interval high) per row of ``values`` (settings x shared seeds, the same seed in
    each column): the rank of each setting's mean, and the 95 % quantiles of its rank over ``resamples``
    paired bootstrap resamples of the seeds (the columns)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[1]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)  # resamples x n
    ranks = average_ranks(values @ counts.T / n)  # settings x resamples
    tail = (1 - LEVEL) / 2
    lo, hi = np.quantile(ranks, [tail, 1 - tail], axis=1, method="inverted_cdf")
    return average_ranks(values.mean(axis=1)), lo, hi


def mde(n: int, sd_diff: float, power: float = POWER, level: float = LEVEL) -> float:
    """The smallest difference a paired t-test on ``n`` seeds detects at two-sided level 1 − ``level`` with
    ``power``: (t((1 + level)/2, n − 1) + t(power, n − 1)) · sd_diff / √n; nan below two seeds."""
    if n < 2 or math.isnan(sd_diff):
        return math.nan
    return (t_quantile((1 + level) / 2, n - 1) + t_quantile(power, n - 1)) * sd_diff / math.sqrt(n)


def paired_spread(values: np.ndarray) -> float:
    """The median, over every pair of rows of ``values`` (settings x shared seeds), of the sample std of the
    pair's per-seed differences; nan with one row or one seed."""
    values = np.asarray(values, dtype=float)
    k, n = values.shape
    if k < 2 or n < 2:
        return math.nan
    i, j = np.triu_indices(k, 1)
    return float(np.median(np.std(values[i] - values[j], axis=1, ddof=1)))


@dataclass
class Group:
    """The settings of one protocol, layer budget, pattern and sparsity column (``cells``: their rows)."""
    cells: pd.DataFrame
    axes: str  # the layer budget and pattern in --where's words, "budget=global, pattern=unstructured"

    @property
    def seeds(self) -> list[int]:
        """The seeds every setting of the group ran."""
        return sorted(set.intersection(*(set(f) for f in self.cells["finals"])))


def groups(cells: pd.DataFrame) -> list[Group]:
    """The groups of two settings or more with runs (compare.py's pairing: protocol, layer budget, pattern,
    one sparsity column), without dense and the methods whose sparsity is an outcome."""
    ours = cells[(cells["n_seeds"].fillna(0) > 0) & (cells["method"] != "dense")
                 & ~cells["sparsity_is_outcome"].fillna(False).astype(bool)]
    ours = ours[[isinstance(f, dict) and len(f) > 0 for f in ours["finals"]]]
    out = []
    if ours.empty:
        return out
    axes = pd.Series([", ".join(f"{key_words(k)}={v}" for k, v in sorted(flat_shared(i).items()))
                      for i in ours["identity"]], index=ours.index)
    for _, part in ours.assign(_axes=axes).groupby(["model", "dataset", "protocol", "_axes"], sort=False):
        start = None
        column = []
        for s in sorted(set(part["target_sparsity"])):  # 0.999 and 0.9990234375: one column
            if start is None or s - start >= SAME_SPARSITY:
                start = s
            column.append((s, start))
        at = part["target_sparsity"].map(dict(column))
        for _, g in part.groupby(at, sort=True):
            if len(g) >= 2:
                out.append(Group(g.drop(columns="_axes"), g["_axes"].iloc[0]))
    return out


def rank_rows(cells: pd.DataFrame, resamples: int = RESAMPLES) -> pd.DataFrame:
    """One row per setting of every group whose settings share two seeds or more (RANK_COLUMNS), sorted by
    model, data set, protocol, layer budget and pattern, sparsity and rank."""
    rows = []
    for g in groups(cells):
        seeds = g.seeds
        if len(seeds) < 2:
            continue
        values = np.array([[f[s] for s in seeds] for f in g.cells["finals"]])
        rank, lo, hi = bootstrap_ranks(values, resamples)
        if len(seeds) < MIN_INTERVAL_SEEDS:
            lo = hi = np.full(len(rank), math.nan)
        sd = paired_spread(values)
        smallest = mde(len(seeds), sd)
        for (_, c), v, r, a, b in zip(g.cells.iterrows(), values, rank, lo, hi):
            rows.append({"model": c["model"], "dataset": c["dataset"], "protocol": c["protocol"],
                         "protocol_label": c["protocol_label"], "axes": g.axes,
                         "target_sparsity": c["target_sparsity"], "method": c["method"],
                         "setting_label": c["setting_label"], "label": c.get("label") or c["setting_label"],
                         "hash": c["hash"], "n_settings": len(g.cells), "n_paired": len(seeds),
                         "paired_seeds": ",".join(str(s) for s in seeds), "paired_mean": float(v.mean()),
                         "paired_std": float(v.std(ddof=1)), "rank": float(r), "rank_lo": float(a),
                         "rank_hi": float(b), "sd_diff": sd, "mde": smallest,
                         "n_seeds": int(c["n_seeds"]), "_column": min(g.cells["target_sparsity"])})
    out = pd.DataFrame(rows, columns=[*RANK_COLUMNS, "label", "n_seeds", "_column"])
    return out.sort_values(["model", "dataset", "protocol_label", "axes", "_column", "rank", "label"],
                           kind="stable").reset_index(drop=True)


def unranked(cells: pd.DataFrame) -> list[tuple[Group, str]]:
    """The groups of two settings or more that share fewer than two seeds, each with why it is not ranked:
    ``the 3 settings share 1 seed (fewest: snip, 1 seed)``."""
    out = []
    for g in groups(cells):
        seeds = g.seeds
        if len(seeds) >= 2:
            continue
        n = [len(f) for f in g.cells["finals"]]
        fewest = g.cells.iloc[int(np.argmin(n))]
        label = fewest.get("label") or fewest["setting_label"]
        out.append((g, f"the {len(g.cells)} settings share {_seeds(len(seeds))} (fewest: {label}, {_seeds(min(n))})"))
    return out


def _seeds(n: int) -> str:
    return "no seed" if n == 0 else f"{n} seed{'' if n == 1 else 's'}"


def _rank(r: float) -> str:
    return f"{r:g}"


def mde_line(n: int, value: float, sd_diff: float, pairs: int) -> str:
    """'with 20 seeds, differences above 0.21 points are detectable (80 % power, ...)'."""
    return (f"with {n} seeds, differences above {value:.2f} points are detectable ({100 * POWER:.0f} % power,"
            f" paired t-test at {100 * (1 - LEVEL):.0f} % two-sided; sd of the paired differences {sd_diff:.2f},"
            f" the median over {pairs} pair{'' if pairs == 1 else 's'} of settings)")


def markdown(rows: pd.DataFrame, skipped: list[tuple[Group, str]]) -> str:
    """The Ranks subsection of one protocol: per sparsity column (and layer budget and pattern where the
    protocol has several), the seeds shared, the smallest detectable difference and a table of the settings
    by rank; one line per group not ranked. '' when no group of the protocol is ranked."""
    if rows.empty:
        return ""
    several = len(set(rows["axes"]) | {g.axes for g, _ in skipped}) > 1
    lines = ["", "### Ranks", ""]
    entries = [(float(part["_column"].iloc[0]), axes, part, "") for (axes, _), part in
               rows.groupby(["axes", "_column"], sort=False)]
    entries += [(float(min(g.cells["target_sparsity"])), g.axes, None, why) for g, why in skipped]
    for column, axes, part, why in sorted(entries, key=lambda e: (e[1], e[0])):
        head = f"**{fmt_sparsity(column)}" + (f", {axes}" if several and axes else "") + "**"
        if part is None:
            lines += [f"{head}: not ranked: {why}.", ""]
            continue
        n, k = int(part["n_paired"].iloc[0]), int(part["n_settings"].iloc[0])
        more = int((part["n_seeds"] > n).sum())
        left = f" (the other seeds of {more} setting{'s' if more > 1 else ''} left out)" if more else ""
        bare = n < MIN_INTERVAL_SEEDS
        lines += [f"{head}: {k} settings on the {n} seeds they all ran{left}; "
                  f"{mde_line(n, part['mde'].iloc[0], part['sd_diff'].iloc[0], k * (k - 1) // 2)}."
                  + (f" No interval on the ranks: fewer than {MIN_INTERVAL_SEEDS} seeds." if bare else ""), "",
                  f"| rank{'' if bare else ' [95 % interval]'} | setting | final test acc on those seeds,"
                  " mean ± std |",
                  "|---|---|---|"]
        lines += [f"| {_rank(r.rank)}{'' if bare else f' [{_rank(r.rank_lo)}, {_rank(r.rank_hi)}]'} | {r.label} |"
                  f" {r.paired_mean:.2f} ± {r.paired_std:.2f} |" for r in part.itertuples()]
        lines.append("")
    return "\n".join(lines) + "\n"
