"""Summaries -> curves (CSV + PNG) and tables. Figures are drawn with matplotlib's Agg backend."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_run_curve(points: list[dict], csv_path: Path, png_path: Path, title: str = "") -> None:
    """One run's accuracy-vs-sparsity curve: test accuracy just before each prune event and at the end."""
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "sparsity", "test_acc"])
        w.writeheader()
        for p in points:
            w.writerow({k: p[k] for k in ("epoch", "sparsity", "test_acc")})
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    # x = -log10(1 - s): every tenfold cut of the remaining weights is one unit, so the geometric
    # schedule's points spread out instead of piling up near 1
    to_x = lambda s: -math.log10(max(1.0 - s, 1e-6))  # noqa: E731
    xs = [to_x(p["sparsity"]) for p in points]
    ax.plot(xs, [p["test_acc"] for p in points], marker="o")
    for x, p in zip(xs, points):
        ax.annotate(f"ep {p['epoch']}", (x, p["test_acc"]), fontsize=7,
                    textcoords="offset points", xytext=(0, 5), ha="center")
    ticks = [t for t in (0.0, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999) if to_x(t) <= max(xs) + 0.3]
    ax.set_xticks([to_x(t) for t in ticks], [f"{t:g}" for t in ticks])
    ax.set_xlabel("sparsity (log scale of the weights removed)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def make_report(results_dir: str | Path = "results", out_dir: str | Path | None = None,
                sweeps: list[str] | None = None) -> dict[str, Any]:
    """Aggregate every summary under <results_dir>/runs into <out_dir>/tables and <out_dir>/curves.

    ``out_dir`` defaults to ``results_dir``; ``sweeps`` picks the presets checked for missing runs (all by
    default, [] for none). Returns the files written and the counts of runs, cells and missing jobs.
    """
    from flipout_repro import coverage, figures, tables
    from flipout_repro.results import curves_dir, reference_dir, tables_dir

    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    runs = tables.load_runs(results_dir / "runs")
    cells = tables.attach_reference(tables.aggregate(runs), tables.load_reference(reference_dir()))
    jobs, problems = coverage.coverage(results_dir, sweeps)
    missing_text, sections = coverage.missing_markdown(jobs, results_dir, problems)
    written = tables.write_tables(cells, runs, tables_dir(out_dir), sections)
    (tables_dir(out_dir) / "missing.md").write_text(missing_text)
    written.append(tables_dir(out_dir) / "missing.md")
    for (model, dataset), part in cells.groupby(["model", "dataset"], sort=True):
        if not (part["n_seeds"].fillna(0) > 0).any():
            continue
        stem = curves_dir(out_dir) / f"{model}-{dataset}"
        figures.plot_pair(part, f"{model} on {dataset}: final test accuracy, mean ± std over seeds",
                          stem.with_suffix(".png"), stem.with_suffix(".csv"))
        written += [stem.with_suffix(".png"), stem.with_suffix(".csv")]
    return {"files": written, "runs": len(runs), "cells": int((cells["n_seeds"].fillna(0) > 0).sum()),
            "missing": sum(j.state != "done" for j in jobs), "problems": problems}


def main(argv: list[str] | None = None) -> None:
    """flipout-report [--results-dir DIR] [--out DIR] [--sweeps a,b | --no-sweeps]: tables and figures."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="flipout-report", description="Aggregate every summary.json under"
                                " <results-dir>/runs into tables (Markdown + CSV) and accuracy-vs-sparsity"
                                " figures, beside the paper's published numbers.")
    p.add_argument("--results-dir", default="results", help="where runs/ is (default: results)")
    p.add_argument("--out", default=None, help="where tables/ and curves/ go (default: the results dir)")
    p.add_argument("--sweeps", default=None, help="comma-separated sweep presets to check for missing runs"
                   " (default: all of conf/sweep)")
    p.add_argument("--no-sweeps", action="store_true", help="do not check the sweep presets")
    a = p.parse_args(argv)
    if not (Path(a.results_dir) / "runs").is_dir():
        p.error(f"--results-dir={a.results_dir} has no runs/ folder: run a sweep first"
                " (e.g. flipout-train -m +sweep=tiny) or point --results-dir at the folder that holds runs/")
    sweeps = [] if a.no_sweeps else (a.sweeps.split(",") if a.sweeps else None)
    try:
        r = make_report(a.results_dir, a.out, sweeps)
    except ValueError as exc:
        p.error(str(exc))
    print(f"{r['runs']} runs, {r['cells']} cells; {r['missing']} runs of the sweep presets not done"
          " (see tables/missing.md)")
    for name, why in r["problems"].items():
        print(f"  sweep preset {name} cannot be composed here: {why}", file=sys.stderr)
    for f in r["files"]:
        print(f"  {f}")
