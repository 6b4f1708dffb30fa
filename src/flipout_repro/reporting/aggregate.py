"""The report: every summary.json under <results_dir>/runs (or those ``--where`` and ``--sweep`` pick) ->
per model and data set a table file with one section per protocol (Markdown + CSV) beside the published
numbers and a baseline method, per protocol an accuracy-vs-sparsity figure and a forest plot of the
differences to the baseline (PNG + CSV), the ranks of the settings at each sparsity with their intervals
(tables/ranks.csv), the list of sweep runs still missing, and where every published table stands
(tables/published.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from flipout_repro.config.migrate import migrate
from flipout_repro.config.paths import reference_dir
from flipout_repro.reporting import (compare, compute, figures, forest, markdown, published, reference, select,
                                     sections, sweep_status, tables)
from flipout_repro.reporting.figures import X_AXES
from flipout_repro.rundir import atomic_write_text, curves_dir, real_folder, tables_dir


def make_report(results_dir: str | Path = "results", out_dir: str | Path | None = None,
                sweeps: list[str] | None = None, baseline: str = compare.DEFAULT_BASELINE,
                where: list[str] | None = None, sweep: str | None = None, x: str = "nominal") -> dict[str, Any]:
    """Aggregate the summaries under <results_dir>/runs into <out_dir>/tables and <out_dir>/curves.

    ``out_dir`` defaults to ``results_dir``; ``sweeps`` picks the presets checked for missing runs (all by
    default, or ``[sweep]``; [] for none); ``baseline`` is the method every other is compared with, within
    each protocol; ``where`` (``["epochs=10", "method=rigl"]``, reporting/select.py) and ``sweep`` (a
    preset's name) keep only the runs they describe; ``x``: the sparsity of the figures' x axis, ``nominal``
    or ``effective`` (figures.X_AXES). Returns the files written, the counts of runs, cells
    and missing jobs, the presets that cannot be composed, the published line, and the cells without a
    baseline with the reason (``no_baseline``). ValueError for a bad ``where`` or ``sweep``.
    """
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not a sparsity the figures can show: use one of {', '.join(X_AXES)}")
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    conditions = select.parse_where(where or [])
    members = select.sweep_members(sweep, results_dir) if sweep else None
    moved = migrate(results_dir)  # run folders of an earlier identity format move to theirs, once
    runs = tables.load_runs(results_dir / "runs")
    if conditions and len(runs):
        named = set().union(*(select.identity_keys(i) for i in runs["identity"]))
        conditions = select.resolve_where(conditions, named, named.union(*runs["keys"]))
    keep = [select.matches(k, conditions) and (members is None or (h, s) in members)
            for k, h, s in zip(runs["keys"], runs["hash"], runs["seed"])]
    runs = runs[pd.Series(keep, index=runs.index, dtype=bool)]
    ref = _published(runs)
    hashes = None if members is None else {h for h, _ in members}
    shown = pd.Series([select.matches(k, conditions) and (hashes is None or h in hashes)
                       for k, h in zip(ref["keys"], ref["hash"])], index=ref.index, dtype=bool)
    cells = reference.attach_reference(tables.aggregate(runs), ref, shown)
    among = " kept by --where/--sweep" if conditions or members is not None else ""
    cells = tables.short_labels(compare.attach_comparisons(cells, baseline, among))
    jobs, problems = sweep_status.coverage(results_dir, [sweep] if sweeps is None and sweep else sweeps)
    missing_text, missing = sweep_status.missing_markdown(jobs, results_dir, problems, sweeps)
    for folder in (tables_dir(out_dir), curves_dir(out_dir)):
        real_folder(folder, Path(out_dir))  # a link planted at tables/ or curves/ is refused, not followed
    written = markdown.write_tables(cells, runs, tables_dir(out_dir), missing, baseline, results_dir)
    atomic_write_text(tables_dir(out_dir) / "missing.md", missing_text)
    paper = published.overview(cells, ref)  # every paper table, with runs here or not
    atomic_write_text(tables_dir(out_dir) / "published.md", published.markdown(paper))
    written += [tables_dir(out_dir) / "missing.md", tables_dir(out_dir) / "published.md"]
    written += _figures(cells, curves_dir(out_dir), baseline, x)
    return {"files": written, "runs": len(runs), "cells": int((cells["n_seeds"].fillna(0) > 0).sum()),
            "missing": sum(j.state != "done" for j in sweep_status.shown(jobs, sweeps)), "problems": problems,
            "published": published.summary_line(paper), "no_baseline": sections.no_baseline_lines(cells),
            "migration": moved.lines()}


def _published(runs: pd.DataFrame) -> pd.DataFrame:
    """The published rows, those of the models and data sets with runs here given their identity."""
    done = runs[runs["status"] == "completed"]
    pairs = set(zip(done["model"], done["dataset"]))
    return reference.published_rows(reference_dir(), pairs)


def _figures(cells: pd.DataFrame, out: Path, baseline: str, x: str = "nominal") -> list[Path]:
    """Per model, data set and protocol with runs: the accuracy figure (its x axis: ``x``), the accuracy
    against training compute where some cell recorded it and, where some cell has a difference to the
    baseline, the forest plot."""
    written: list[Path] = []
    for (model, dataset, protocol), part in cells.groupby(["model", "dataset", "protocol"], sort=True):
        if not (part["n_seeds"].fillna(0) > 0).any():
            continue
        label, shared = part["protocol_label"].iloc[0], part["shared"].iloc[0]
        every = f"\nevery {{}}: {shared}" if shared else ""
        stem = out / tables.figure_stem(model, dataset, protocol)
        title = f"{label}\nfinal test accuracy, mean ± std over seeds{every.format('line')}"
        written += figures.plot_pair(part, title, stem.with_suffix(".png"), stem.with_suffix(".csv"), x)
        written.append(stem.with_suffix(".csv"))
        cstem = out / f"{stem.name}-compute"
        written += compute.plot_compute(part, f"{label}\nfinal test accuracy against training compute, mean ± std over"
                                        f" seeds{every.format('line')}", cstem.with_suffix(".png"),
                                        cstem.with_suffix(".csv"), x)
        fstem = out / f"{stem.name}-vs-{baseline}"
        if forest.plot_forest(part, baseline, f"{label}\ndifference to {baseline}, final test accuracy, mean over"
                              f" seeds{every.format('row')}", fstem.with_suffix(".png"), fstem.with_suffix(".csv")):
            written += [fstem.with_suffix(".png"), fstem.with_suffix(".pdf"), fstem.with_suffix(".csv")]
    return written
