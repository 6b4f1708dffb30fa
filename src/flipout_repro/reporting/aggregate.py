"""The report: every summary.json under <results_dir>/runs -> tables (Markdown + CSV) beside the published
numbers and a baseline method, accuracy-vs-sparsity figures and forest plots of the differences to the
baseline (PNG + CSV), the list of sweep runs still missing, and where every published table stands
(tables/published.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flipout_repro.config.migrate import migrate
from flipout_repro.config.paths import reference_dir
from flipout_repro.reporting import compare, figures, forest, markdown, published, reference, sweep_status, tables
from flipout_repro.rundir import curves_dir, tables_dir


def make_report(results_dir: str | Path = "results", out_dir: str | Path | None = None,
                sweeps: list[str] | None = None, baseline: str = compare.DEFAULT_BASELINE) -> dict[str, Any]:
    """Aggregate every summary under <results_dir>/runs into <out_dir>/tables and <out_dir>/curves.

    ``out_dir`` defaults to ``results_dir``; ``sweeps`` picks the presets checked for missing runs (all by
    default, [] for none); ``baseline`` is the method every other is compared with. Returns the files
    written and the counts of runs, cells and missing jobs.
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    migrate(results_dir)  # run folders of an earlier identity format move to theirs, once
    runs = tables.load_runs(results_dir / "runs")
    ref = reference.load_reference(reference_dir())
    cells = compare.attach_comparisons(reference.attach_reference(tables.aggregate(runs), ref), baseline)
    jobs, problems = sweep_status.coverage(results_dir, sweeps)
    missing_text, sections = sweep_status.missing_markdown(jobs, results_dir, problems, sweeps)
    written = markdown.write_tables(cells, runs, tables_dir(out_dir), sections, baseline)
    (tables_dir(out_dir) / "missing.md").write_text(missing_text)
    written.append(tables_dir(out_dir) / "missing.md")
    paper = published.overview(cells, ref)  # every paper table, with runs here or not
    (tables_dir(out_dir) / "published.md").write_text(published.markdown(paper))
    written.append(tables_dir(out_dir) / "published.md")
    for (model, dataset), part in cells.groupby(["model", "dataset"], sort=True):
        if not (part["n_seeds"].fillna(0) > 0).any():
            continue
        stem = curves_dir(out_dir) / f"{model}-{dataset}"
        written += figures.plot_pair(part, f"{model} on {dataset}: final test accuracy, mean ± std over seeds",
                                     stem.with_suffix(".png"), stem.with_suffix(".csv"))
        written += [stem.with_suffix(".csv")]
        fstem = curves_dir(out_dir) / f"{model}-{dataset}-vs-{baseline}"
        if forest.plot_forest(part, baseline, f"{model} on {dataset}: difference to {baseline}, final test accuracy,"
                              " mean over seeds", fstem.with_suffix(".png"), fstem.with_suffix(".csv")):
            written += [fstem.with_suffix(".png"), fstem.with_suffix(".pdf"), fstem.with_suffix(".csv")]
    return {"files": written, "runs": len(runs), "cells": int((cells["n_seeds"].fillna(0) > 0).sum()),
            "missing": sum(j.state != "done" for j in sweep_status.shown(jobs, sweeps)), "problems": problems,
            "published": published.summary_line(paper)}
