"""The table files: per model and data set a Markdown table (what a reader sees) and a CSV (every number),
and runs.csv (one row per run). The accuracy is the final epoch's everywhere; the best epoch's has its
own column and is never used for a comparison.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from flipout_repro.reporting.compare import COMPARISON_COLUMNS, fmt_diff, fmt_published, published_summary

#: Fewer seeds than this are flagged (⚠) in the seeds column.
FEW_SEEDS = 3


def fmt_pm(mean: float, std: float) -> str:
    """'92.77 ± 0.08', '92.77' (one seed: std undefined), '' (no value)."""
    if mean is None or pd.isna(mean):
        return ""
    return f"{mean:.2f}" if std is None or pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def fmt_sparsity(s: float) -> str:
    """0.99609375 -> '99.61 %'."""
    return "" if pd.isna(s) else "0 %" if s == 0 else f"{100 * s:.2f} %"


def fmt_interval(lo: float, hi: float) -> str:
    """'[91.52, 94.48]', '—' when there is no interval (one seed)."""
    return "—" if lo is None or pd.isna(lo) else f"[{lo:.2f}, {hi:.2f}]"


def fmt_fraction(f: float) -> str:
    """0.4183 -> '0.418', '' when not recorded."""
    return "" if f is None or pd.isna(f) else f"{f:.3g}"


def fmt_speedup(x: float) -> str:
    """1.734 -> '1.73x' (dense latency / sparse latency), '–' when not measured."""
    return "–" if x is None or pd.isna(x) else f"{x:.2f}x"


def fmt_seeds(n: int) -> str:
    """'3', '2 ⚠' (fewer than FEW_SEEDS), '**missing**' (none)."""
    return "**missing**" if not n else f"{n} ⚠" if n < FEW_SEEDS else str(n)


def markdown_table(cells: pd.DataFrame) -> str:
    """One Markdown table of a model and data set's cells (int8 column only when some run has it, the
    baseline column only when a baseline was compared, the published columns only when the paper has some)."""
    int8 = cells["int8_mean"].notna().any() if "int8_mean" in cells else False
    # the int8 column names the settings it shows: in its head when every cell has the same, else per cell
    labels = {v for v in cells.loc[cells["int8_mean"].notna(), "int8_settings"] if isinstance(v, str) and v} \
        if int8 and "int8_settings" in cells else set()
    int8_head = f"int8 ({next(iter(labels))})" if len(labels) == 1 else "int8"
    pub = cells["paper_acc"].notna().any()  # no published columns for pairs the paper did not run
    base = cells["baseline"].replace("", None).dropna() if "baseline" in cells else pd.Series([], dtype=object)
    base_head = [f"Δ vs {base.iloc[0]} [95 % CI]"] if len(base) else []
    compute = cells["train_macs_fraction"].notna().any() if "train_macs_fraction" in cells else False
    speed = any(cells[c].notna().any() for c in ("speedup_b1", "speedup_b64") if c in cells)
    head = ["method", "knobs / setting", "sparsity", "precision", "seeds", "test acc (final)", "95 % CI",
            *base_head, "best (own column)", *([int8_head] if int8 else []),
            *(["paper", "vs paper"] if pub else []), *(["train compute (× dense)"] if compute else []),
            *(["CPU speed-up b1 / b64"] if speed else []), "epochs", "run hash"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, c in cells.iterrows():
        outcome = bool(c["sparsity_is_outcome"])
        sp = fmt_sparsity(c["achieved_mean"] if outcome else c["target_sparsity"]) + (" (outcome)" if outcome else "")
        n = int(c["n_seeds"]) if not pd.isna(c["n_seeds"]) else 0
        paper = fmt_pm(c["paper_acc"], c["paper_std"])
        if outcome and not pd.isna(c["paper_sparsity"]) and paper:
            paper += f" at {fmt_sparsity(c['paper_sparsity'])}"
        knobs = "; ".join(x for x in (c["variant"], c.get("setting_label")) if isinstance(x, str) and x)
        row = [c["method"], knobs, sp, c.get("precision") if isinstance(c.get("precision"), str) else "",
               fmt_seeds(n), fmt_pm(c.get("final_mean"), c.get("final_std")),
               fmt_interval(c.get("final_ci_lo"), c.get("final_ci_hi")) if n else "",
               *([fmt_diff(c)] if base_head else []), fmt_pm(c.get("best_mean"), c.get("best_std")),
               *([fmt_pm(c["int8_mean"], c["int8_std"]) + (f" ({c['int8_settings']})" if len(labels) > 1
                                                             and c.get("int8_settings") else "")] if int8 else []),
               *([paper, fmt_published(c)] if pub else []),
               *([fmt_fraction(c.get("train_macs_fraction"))] if compute else []),
               *([" / ".join(fmt_speedup(c.get(k)) for k in ("speedup_b1", "speedup_b64"))] if speed else []),
               "" if pd.isna(c.get("epochs", math.nan)) else str(int(c["epochs"])),
               c.get("hash") if isinstance(c.get("hash"), str) else ""]
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["model", "dataset", "method", "variant", "target_sparsity", "precision", "sparsity_is_outcome", "n_seeds",
               "seeds", "achieved_mean", "achieved_std", "final_mean", "final_std", *COMPARISON_COLUMNS,
               "best_mean", "best_std", "int8_mean", "int8_std", "int8_settings", "train_macs_fraction", "speedup_b1",
               "speedup_b64", "paper_acc", "paper_std", "paper_sparsity", "diff",
               "epochs", "hash", "setting", "setting_label"]

ABOUT = ("Test accuracy (%) at the final epoch (as the paper), mean ± sample std over seeds; 95 % CI: the"
         " Student-t interval of the mean; seeds flagged ⚠ when fewer than 3. Best: the best epoch's accuracy,"
         " shown apart and never compared.")
ABOUT_BASE = ("Δ vs {b}: our final mean minus {b}'s at the same sparsity, with its 95 % interval (p: paired by"
              " seed, else Welch); ✱ and better/worse when the interval excludes zero, else within noise.")
ABOUT_PAPER = ("Paper: the published value (mean ± std over seeds 42, 43, 44); vs paper: reproduced when the"
               " published mean lies in our 95 % CI widened by the published std, else our mean minus the paper's.")
ABOUT_COMPUTE = ("Train compute: the multiply-adds of all training steps (3x the masked network's forward per"
                 " sample, summed as the masks changed) as a fraction of the dense run's, mean over seeds.")
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


def write_tables(cells: pd.DataFrame, runs: pd.DataFrame, out: Path, missing_md: dict[tuple, str],
                 baseline: str = "global_magnitude") -> list[Path]:
    """<out>/<model>-<dataset>.md and .csv per pair, and <out>/runs.csv; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for (model, dataset), part in cells.groupby(["model", "dataset"], sort=True):
        stem = out / f"{model}-{dataset}"
        part = part.reindex(columns=CSV_COLUMNS + [c for c in part.columns if c not in CSV_COLUMNS])
        part[CSV_COLUMNS].to_csv(stem.with_suffix(".csv"), index=False, float_format="%.6g")
        about = [ABOUT]
        base = part["baseline"].replace("", None).dropna()
        if len(base):
            about.append(ABOUT_BASE.format(b=base.iloc[0]))
        elif (part["n_seeds"].fillna(0) > 0).any():
            about.append(f"No comparison: no {baseline} runs at the sparsities of this table (flipout-report"
                         " --baseline METHOD compares with another method).")
        if part["paper_acc"].notna().any():
            about.append(ABOUT_PAPER)
        if part["train_macs_fraction"].notna().any():
            about.append(ABOUT_COMPUTE)
        if part[["speedup_b1", "speedup_b64"]].notna().any().any():
            about.append(ABOUT_SPEED)
        summary = published_summary(part)
        cost = cost_line(runs[(runs["model"] == model) & (runs["dataset"] == dataset)])
        text = (f"# {model} on {dataset}\n\n" + "\n".join(about) + "\n\n" + (f"**{summary}**\n\n" if summary else "")
                + (f"{cost}\n\n" if cost else "")
                + markdown_table(part) + missing_md.get((model, dataset), ""))
        stem.with_suffix(".md").write_text(text)
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    runs.drop(columns=["knobs", "flat"]).to_csv(out / "runs.csv", index=False, float_format="%.6g")
    return written + [out / "runs.csv"]
