"""The table files: per model and data set a Markdown file (what a reader sees: one section per protocol,
reporting/sections.py, each followed by the ranks of its settings at each sparsity, reporting/ranks.py)
and a CSV (every number of every cell), runs.csv (one row per run) and ranks.csv. The accuracy is the final
epoch's everywhere; the best epoch's has its own column and is never used for a comparison.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from flipout_repro.figure_style import natural_key
from flipout_repro.reporting.compare import COMPARISON_COLUMNS, published_summary
from flipout_repro.reporting import ranks
from flipout_repro.reporting.derived import CONTROL_COLUMNS, control_rows, controls_markdown, parents_markdown
from flipout_repro.reporting.sections import section, shows_effective
from flipout_repro.reporting.tables import OBJECT_COLUMNS
from flipout_repro.rundir import atomic_write_text, path_name

CSV_COLUMNS = ["model", "dataset", "protocol", "protocol_label", "method", "setting_label", "target_sparsity",
               "precision", "epochs", "sparsity_is_outcome", "n_seeds", "seeds", "achieved_mean", "achieved_std",
               "effective_mean",
               "final_mean", "final_std", *COMPARISON_COLUMNS, "best_mean", "best_std", "int8_mean", "int8_std",
               "int8_settings", "train_macs_fraction", "speedup_b1", "speedup_b64", "paper_acc", "paper_std",
               "paper_sparsity", "diff", "paper_note", "paper_source", "control", "parent_label", "parent_hash", "hash",
               "setting"]

ABOUT = ("One section per protocol (how the runs were trained, in its heading): runs are compared only within"
         " one. Rows: method settings; columns: sparsity. Test accuracy (%) at the final epoch (as the paper), mean"
         " ± sample std over seeds; 95 % CI: the Student-t interval of the mean; seeds flagged ⚠ when fewer than 3."
         " Best: the best epoch's accuracy, shown apart and never compared.")
ABOUT_BASE = ("Δ vs {b}: our final mean minus that of {b}'s cell with the same protocol, layer budget, pattern and"
              " sparsity, with its 95 % interval (p: paired by seed, else Welch); ✱ and better/worse when the"
              " interval excludes zero, else within noise.")
ABOUT_PAPER = ("Paper: the published value (mean ± std over seeds 42, 43, 44), for the run whose protocol and axes"
               " are those of the sweep preset that reproduces it (results/reference/sweeps.csv); vs paper:"
               " reproduced when the published mean lies in our 95 % CI widened by the published std, else our"
               " mean minus the paper's; not comparable: the run differs from the published one in the keys named.")
ABOUT_COMPUTE = ("Train compute: the multiply-adds of all training steps (3x the masked network's forward per"
                 " sample, summed as the masks changed) as a fraction of the dense run's, mean over seeds.")
ABOUT_EFFECTIVE = ("Effective sparsity (shown where it differs from the nominal one): kept weights that no path from"
                   " the input to the output runs through counted as pruned too (Vysogorets & Kempe 2023), mean"
                   " over seeds.")
ABOUT_RANKS = ("Ranks (under a protocol's table, where two settings or more at one sparsity ran two seeds or more in"
               " common): the settings of each sparsity, layer budget and pattern ranked by their final mean over the"
               " seeds they all ran (1: best); 95 % interval of the rank (from {k} seeds in common): a paired"
               " bootstrap over those seeds ({n} resamples, fixed generator seed); the smallest difference a paired"
               " t-test on those seeds detects at 5 % two-sided with 80 % power, (t(0.975, n−1) + t(0.80, n−1))"
               " · sd / √n, sd the median over pairs of settings of the std of their per-seed differences. Dense"
               " and methods whose sparsity is an outcome are not ranked.").format(n=f"{ranks.RESAMPLES:,}",
                                                                              k=ranks.MIN_INTERVAL_SEEDS)
ABOUT_SPEED = ("CPU speed-up: dense latency / latency with the pruned Linear layers as sparse CSR, at batch 1 and"
               " 64 (flipout-bench --inference on the run; below 1x: slower), mean over the seeds measured.")


def cost_line(runs: pd.DataFrame) -> str:
    """'Cost: 12 runs, 0.05 device-hours (cpu 0.05)': the summed wall time of a table's runs, failed ones
    included (they cost too), per device type; '' when no run recorded it."""
    timed = runs.dropna(subset=["wall_time_s"]) if "wall_time_s" in runs else runs.iloc[0:0]
    if timed.empty:
        return ""
    per = timed.groupby(timed["device"].replace("", "unknown"))["wall_time_s"].sum() / 3600
    parts = ", ".join(f"{d} {h:.3g}" for d, h in per.items())
    return f"Cost: {len(runs)} runs, {per.sum():.3g} device-hours ({parts}; sum of the runs' wall time)."


def protocols(part: pd.DataFrame) -> list[pd.DataFrame]:
    """The cells of one model and data set, one frame per protocol: those with runs first, by their label
    (numbers by value: 10 epochs before 20), then the published cells of protocols we did not run."""
    groups = [g for _, g in part.groupby("protocol", sort=False)]
    return sorted(groups, key=lambda g: (not (g["n_seeds"].fillna(0) > 0).any(), g["protocol"].iloc[0] == "",
                                         natural_key(g["protocol_label"].iloc[0])))


def write_tables(cells: pd.DataFrame, runs: pd.DataFrame, out: Path, missing_md: dict[tuple, str],
                 baseline: str = "global_magnitude", root: Path | None = None) -> list[Path]:
    """<out>/<model>-<dataset>.md and .csv per pair, <out>/runs.csv, <out>/controls.csv where there are
    controls (reporting/derived.py) and <out>/ranks.csv where settings are ranked (reporting/ranks.py);
    returns the files written. ``cells``: after compare.attach_comparisons
    and tables.short_labels; ``root``: the results folder, which the parents' folders are named relative to."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    controls = control_rows(cells)
    ranked, skipped = ranks.rank_rows(cells), ranks.unranked(cells)
    for (model, dataset), part in cells.groupby(["model", "dataset"], sort=True):
        stem = out / f"{path_name(model, 'model.name')}-{path_name(dataset, 'dataset.name')}"
        part = part.reindex(columns=CSV_COLUMNS + [c for c in part.columns if c not in CSV_COLUMNS])
        atomic_write_text(stem.with_suffix(".csv"), part[CSV_COLUMNS].to_csv(index=False, float_format="%.6g"))
        about = [ABOUT]
        if part["base_diff"].notna().any():
            about.append(ABOUT_BASE.format(b=baseline))
        elif (part["n_seeds"].fillna(0) > 0).any():
            about.append(f"No comparison: no cell here has a {baseline} cell with its protocol, layer budget and"
                         " sparsity (each section says why; flipout-report --baseline METHOD compares with another"
                         " method).")
        if part["paper_acc"].notna().any() or (part["paper_status"] == "not comparable").any():
            about.append(ABOUT_PAPER)
        if shows_effective(part):
            about.append(ABOUT_EFFECTIVE)
        if part["train_macs_fraction"].notna().any():
            about.append(ABOUT_COMPUTE)
        if part[["speedup_b1", "speedup_b64"]].notna().any().any():
            about.append(ABOUT_SPEED)
        mine = ranked[(ranked["model"] == model) & (ranked["dataset"] == dataset)]
        if len(mine):
            about.append(ABOUT_RANKS)
        summary = published_summary(part)
        cost = cost_line(runs[(runs["model"] == model) & (runs["dataset"] == dataset)])
        text = (f"# {model} on {dataset}\n\n" + "\n".join(about) + "\n\n" + (f"**{summary}**\n\n" if summary else "")
                + (f"{cost}\n\n" if cost else "")
                + "\n".join(section(g, baseline) + _ranks(g, mine, skipped) for g in protocols(part))
                + controls_markdown(controls[(controls["model"] == model) & (controls["dataset"] == dataset)])
                + parents_markdown(runs[(runs["model"] == model) & (runs["dataset"] == dataset)], part, root)
                + missing_md.get((model, dataset), ""))
        atomic_write_text(stem.with_suffix(".md"), text)
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    atomic_write_text(out / "runs.csv", runs.drop(columns=OBJECT_COLUMNS, errors="ignore").to_csv(
        index=False, float_format="%.6g"))
    if len(controls):
        atomic_write_text(out / "controls.csv", controls[CONTROL_COLUMNS].to_csv(index=False, float_format="%.6g"))
        written.append(out / "controls.csv")
    if len(ranked):
        atomic_write_text(out / "ranks.csv", ranked[ranks.RANK_COLUMNS].to_csv(index=False, float_format="%.6g"))
        written.append(out / "ranks.csv")
    return written + [out / "runs.csv"]


def _ranks(cells: pd.DataFrame, ranked: pd.DataFrame, skipped: list) -> str:
    """The Ranks subsection of one protocol's ``cells`` ('' when none of its groups is ranked)."""
    protocol = cells["protocol"].iloc[0]
    first = cells.iloc[0]
    mine = [(g, why) for g, why in skipped
            if tuple(g.cells[["model", "dataset", "protocol"]].iloc[0]) == (first["model"], first["dataset"], protocol)]
    return ranks.markdown(ranked[ranked["protocol"] == protocol], mine)
