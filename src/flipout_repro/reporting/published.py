"""Every published table against our runs, in one file (tables/published.md) and one line of the report:
for each model and data set of results/reference/*.csv, how many published cells our runs reproduce, how
many are missing, above or below (the rule: reporting/stats.py ``versus_published``). A paper table none
of whose runs exist here is listed too, all missing, so that a report of a small sweep still says where
the paper's numbers stand.
"""
from __future__ import annotations

import pandas as pd

from flipout_repro.reporting.compare import PAPER_STATUSES as STATUSES, published_counts


def overview(cells: pd.DataFrame, ref: pd.DataFrame) -> list[dict]:
    """One row per (model, dataset) of ``ref``: its sources, the number of published cells and the count of
    each status. Pairs with runs count their table's cells (``cells`` after compare.attach_comparisons, the
    same count as the table's summary line); pairs without runs have every published row missing."""
    rows = []
    for (model, dataset), pub in ref.groupby(["model", "dataset"], sort=True):
        part = cells[(cells["model"] == model) & (cells["dataset"] == dataset)] if len(cells) else cells
        has_runs = bool(len(part)) and bool((part["n_seeds"].fillna(0) > 0).any())
        if has_runs:
            total, counts = published_counts(part)  # the same count as the table's own summary line
        else:
            total = len(pub)
            counts = {k: 0 for k in STATUSES} | {"missing": total}
        rows.append({"model": model, "dataset": dataset, "sources": sorted(set(pub["source"])),
                     "published": total, **counts, "has_runs": has_runs})
    return rows


def markdown(rows: list[dict]) -> str:
    """tables/published.md: the rule, then one table row per paper table."""
    lines = ["# Published numbers against ours", "",
             "Every table of results/reference/*.csv. A published cell is *reproduced* when its mean lies in our"
             " 95 % interval of the final-epoch accuracy widened by the published std on each side, else our"
             " mean is *above* or *below* it; *missing*: no run of ours at that cell. Each cell is in the table"
             " file of its model and data set.", "",
             "| model | data set | source | published cells | reproduced | missing | above | below | table |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        where = f"{r['model']}-{r['dataset']}.md" if r["has_runs"] else "no run of this model on this data set here"
        lines.append(f"| {r['model']} | {r['dataset']} | {', '.join(r['sources'])} | {r['published']} | "
                     f"{r['reproduced']} | {r['missing']} | {r['above']} | {r['below']} | {where} |")
    return "\n".join(lines) + "\n"


def summary_line(rows: list[dict]) -> str:
    """The report's one line: published cells over all paper tables, and how many of them stand how."""
    total = sum(r["published"] for r in rows)
    n = {k: sum(r[k] for r in rows) for k in STATUSES}
    with_runs = sum(r["has_runs"] for r in rows)
    return (f"published cells: {total} in {len(rows)} paper tables ({with_runs} with runs here); reproduced "
            f"{n['reproduced']}, missing {n['missing']}, above {n['above']}, below {n['below']}"
            " (see tables/published.md)")

