"""One protocol's section of a table file: its heading (the protocol in words), what every row shares, an
overview (rows: method settings; columns: sparsity), the cells without a baseline and why, and the detail
table with every number. Cells of one section are the only ones ever compared with each other.
"""
from __future__ import annotations

import pandas as pd

from flipout_repro.reporting.compare import fmt_diff, fmt_published
from flipout_repro.reporting.tables import figure_stem

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


def shows_effective(cells: pd.DataFrame) -> bool:
    """Whether a table of ``cells`` has the effective sparsity column: when a cell's differs, as printed, from
    its nominal sparsity."""
    return "effective_mean" in cells and any(
        fmt_sparsity(e) != fmt_sparsity(a) for e, a in zip(cells["effective_mean"], cells["achieved_mean"])
        if not pd.isna(e))


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


def section(cells: pd.DataFrame, baseline: str, figures: bool = True) -> str:
    """The Markdown section of one protocol's cells (after compare.attach_comparisons and
    tables.short_labels); ``figures``: name the figure files drawn for it."""
    first = cells.iloc[0]
    ours = (cells["n_seeds"].fillna(0) > 0).any()
    lines = [f"## {first['protocol_label']}", ""]
    about = [f"Protocol `{first['protocol']}`." if first["protocol"] else "", f"Every row: {first['shared']}."
             if first["shared"] else "", "No run of ours with this protocol: the published cells only." if not ours
             else ""]
    if ours and figures:
        stem = figure_stem(first["model"], first["dataset"], first["protocol"])
        timed = ((cells["n_seeds"].fillna(0) > 0) & cells["train_macs_fraction"].notna()).any()
        about.append(f"Figures: curves/{stem}.png" + (f", curves/{stem}-compute.png" if timed else "")
                     + (f", curves/{stem}-vs-{baseline}.png" if cells["base_diff"].notna().any() else "") + ".")
    lines += [" ".join(x for x in about if x), "", overview(cells)]
    unmatched = cells[cells["base_note"].fillna("") != ""]
    if len(unmatched):
        lines += [f"Not compared with {baseline}:", ""]
        for why, g in unmatched.groupby("base_note", sort=False):
            what = "; ".join(f"{lab} at {', '.join(fmt_sparsity(s) for s in part['target_sparsity'])}"
                             for lab, part in g.groupby("label", sort=False))
            lines.append(f"- {what}: {why}")
        lines.append("")
    return "\n".join(lines) + "\n" + detail_table(cells)


def overview(cells: pd.DataFrame) -> str:
    """Rows: method settings; columns: sparsity (cells whose sparsity is an outcome: a column of their own).
    Each entry: final accuracy mean ± std, and the difference to the baseline where there is one."""
    outcome = cells["sparsity_is_outcome"].astype(bool)
    columns = sorted(set(cells.loc[~outcome, "target_sparsity"]), key=float)
    names = list(dict.fromkeys(fmt_sparsity(s) for s in columns))  # 0.999 and 0.9990234375: one column
    head = ["setting", *names, *(["sparsity an outcome"] if outcome.any() else [])]
    rows: dict[str, dict[str, list[str]]] = {}
    for _, c in cells.iterrows():
        entry = _entry(c)
        where = "sparsity an outcome" if c["sparsity_is_outcome"] else fmt_sparsity(c["target_sparsity"])
        if c["sparsity_is_outcome"]:
            entry += f" at {fmt_sparsity(c['achieved_mean'] if c['n_seeds'] else c['paper_sparsity'])}"
        rows.setdefault(c["label"], {}).setdefault(where, []).append(entry)
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    lines += ["| " + " | ".join([label] + [" / ".join(r.get(h, [])) for h in head[1:]]) + " |"
              for label, r in rows.items()]
    return "\n".join(lines) + "\n"


def _entry(c: pd.Series) -> str:
    if not c["n_seeds"]:
        return "**missing**" + (f" (paper {c['paper_acc']:.2f})" if not pd.isna(c.get("paper_acc")) else "")
    text = fmt_pm(c["final_mean"], c["final_std"])
    if not pd.isna(c.get("base_diff")):
        text += f", Δ {c['base_diff']:+.2f}" + (" ✱" if c["verdict"] in ("better", "worse") else "")
    return text


def detail_table(cells: pd.DataFrame) -> str:
    """Every number of one protocol's cells (int8 column only when some run has it, the baseline column
    only when a baseline was compared, the published columns only when the paper has some)."""
    int8 = cells["int8_mean"].notna().any() if "int8_mean" in cells else False
    # the int8 column names the settings it shows: in its head when every cell has the same, else per cell
    labels = {v for v in cells.loc[cells["int8_mean"].notna(), "int8_settings"] if isinstance(v, str) and v} \
        if int8 else set()
    int8_head = f"int8 ({next(iter(labels))})" if len(labels) == 1 else "int8"
    pub = cells["paper_acc"].notna().any() or (cells["paper_status"] == "not comparable").any()
    base = cells["baseline"].replace("", None).dropna()
    base_head = [f"Δ vs {base.iloc[0]} [95 % CI]"] if len(base) else []
    compute = cells["train_macs_fraction"].notna().any()
    effective = shows_effective(cells)
    speed = any(cells[c].notna().any() for c in ("speedup_b1", "speedup_b64"))
    head = ["setting", "sparsity", *(["effective sparsity"] if effective else []), "seeds", "test acc (final)", "95 % CI", *base_head, "best (own column)",
            *([int8_head] if int8 else []), *(["paper", "vs paper"] if pub else []),
            *(["train compute (× dense)"] if compute else []), *(["CPU speed-up b1 / b64"] if speed else []),
            "run hash"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, c in cells.iterrows():
        outcome = bool(c["sparsity_is_outcome"])
        sp = fmt_sparsity(c["achieved_mean"] if outcome else c["target_sparsity"]) + (" (outcome)" if outcome else "")
        n = int(c["n_seeds"]) if not pd.isna(c["n_seeds"]) else 0
        paper = fmt_pm(c["paper_acc"], c["paper_std"])
        if outcome and not pd.isna(c["paper_sparsity"]) and paper:
            paper += f" at {fmt_sparsity(c['paper_sparsity'])}"
        row = [c["label"], sp, *([fmt_sparsity(c.get("effective_mean"))] if effective else []), fmt_seeds(n), fmt_pm(c.get("final_mean"), c.get("final_std")),
               fmt_interval(c.get("final_ci_lo"), c.get("final_ci_hi")) if n else "",
               *([fmt_diff(c)] if base_head else []), fmt_pm(c.get("best_mean"), c.get("best_std")),
               *([fmt_pm(c["int8_mean"], c["int8_std"]) + (f" ({c['int8_settings']})" if len(labels) > 1
                                                             and c.get("int8_settings") else "")] if int8 else []),
               *([paper, fmt_published(c)] if pub else []),
               *([fmt_fraction(c.get("train_macs_fraction"))] if compute else []),
               *([" / ".join(fmt_speedup(c.get(k)) for k in ("speedup_b1", "speedup_b64"))] if speed else []),
               c.get("hash") if isinstance(c.get("hash"), str) else ""]
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


def no_baseline_lines(cells: pd.DataFrame) -> list[str]:
    """``flipout at 90.00 %: no global_magnitude runs with this protocol (lenet300_100 on mnist5k, 10 epochs,
    ...)``: one line per cell that could be compared with the baseline but was not, and why."""
    rows = cells[cells["base_note"].fillna("") != ""]
    return [f"{c['label']} at {fmt_sparsity(c['target_sparsity'])}: {c['base_note']} ({c['protocol_label']})"
            for _, c in rows.iterrows()] if len(rows) else []
