"""Console entry point ``flipout-report``: tables and figures of every run under a results folder
(reporting/aggregate.py)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """flipout-report [--results-dir DIR] [--out DIR] [--sweeps a,b | --no-sweeps] [--baseline METHOD]
    [--where KEY=VALUE ...] [--sweep NAME] [--x nominal|effective]: tables and figures."""
    from flipout_repro.cli.failures import BAD_INPUT, fail, guard
    from flipout_repro.reporting.aggregate import make_report

    p = argparse.ArgumentParser(prog="flipout-report", description="Aggregate every summary.json under"
                                " <results-dir>/runs into tables (Markdown + CSV) and accuracy-vs-sparsity"
                                " figures, beside the paper's published numbers.")
    p.add_argument("--results-dir", default="results", help="where runs/ is (default: results)")
    p.add_argument("--out", default=None, help="where tables/ and curves/ go (default: the results dir)")
    p.add_argument("--sweeps", default=None, help="comma-separated sweep presets to check for missing runs"
                   " (default: all of conf/sweep)")
    p.add_argument("--no-sweeps", action="store_true", help="do not check the sweep presets")
    p.add_argument("--baseline", default="global_magnitude", help="the method every other is compared with at"
                   " each sparsity, within one protocol: difference, 95 %% interval, verdict, forest plot (default:"
                   " global_magnitude)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE", help="only the runs with this"
                   " value (repeatable; all must hold): a key of the run's identity or config, e.g. epochs=10,"
                   " optim.lr=0.05, budget.name=erk, method=rigl (a group alone: its name)")
    p.add_argument("--sweep", default=None, metavar="NAME", help="only the runs of the jobs of conf/sweep/NAME.yaml"
                   " (and its missing runs in tables/missing.md)")
    p.add_argument("--x", default="nominal", choices=["nominal", "effective"], help="the sparsity on the figures'"
                   " x axis: nominal (the pruned share, default) or effective (kept weights on no input-output path"
                   " counted as pruned too; cells without it are left out, the axis label says how many)")
    p.add_argument("--plan", action="store_true", help="write nothing: count the runs of the sweep presets (--sweeps,"
                   " default all) done and to do, and estimate the GPU-hours of those to do from the throughput"
                   " flipout-bench measured (<results-dir>/bench/*.json)")
    a = p.parse_args(argv)
    if a.plan:
        guard("flipout-report", lambda: _plan(a.results_dir, a.sweeps.split(",") if a.sweeps else None))
        return
    if not (Path(a.results_dir) / "runs").is_dir():
        fail("flipout-report", f"--results-dir={a.results_dir} has no runs/ folder: run a sweep first (e.g."
             " flipout-train -m +sweep=tiny) or point --results-dir at the folder that holds runs/", BAD_INPUT)
    out = Path(a.out if a.out is not None else a.results_dir)
    problem = _unwritable(out)
    if problem:
        fail("flipout-report", f"--out={out} {problem}: pass --out DIR, a folder you can write to", BAD_INPUT)
    sweeps = [] if a.no_sweeps else (a.sweeps.split(",") if a.sweeps else None)
    r = guard("flipout-report", lambda: make_report(a.results_dir, a.out, sweeps, a.baseline, a.where, a.sweep, a.x))
    for line in r["migration"]:  # run folders of an earlier identity format, moved (or left, and why)
        print(line)
    print(f"{r['runs']} runs, {r['cells']} cells; {r['missing']} runs of the sweep presets you started not done"
          " (see tables/missing.md)")
    if r["no_baseline"]:
        print(f"{len(r['no_baseline'])} cells without a {a.baseline} cell of their protocol to compare with (each"
              " table says why)")
    print(r["published"])
    for name, why in r["problems"].items():
        print(f"  sweep preset {name} cannot be composed here: {why}", file=sys.stderr)
    for f in r["files"]:
        print(f"  {f}")


def _plan(results_dir: str, sweeps: list[str] | None) -> None:
    """Print the plan of the sweep presets ``sweeps`` (all by default) under ``results_dir``."""
    from flipout_repro.data import TRAIN_IMAGES
    from flipout_repro.reporting.plan import format_plan, make_plan, measurements
    from flipout_repro.reporting.sweep_status import coverage

    jobs, problems = coverage(results_dir, sweeps)
    for name, why in problems.items():
        print(f"  sweep preset {name} cannot be composed here: {why}", file=sys.stderr)
    bench = Path(results_dir) / "bench"
    print(format_plan(make_plan(jobs, measurements(bench), TRAIN_IMAGES), bench))


def _unwritable(folder: Path) -> str:
    """Why tables and figures cannot be written under ``folder`` ("" if they can): it, or the nearest
    part of its path that exists, must be a folder this process may write in."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"is not a folder ({probe} is a file)" if probe != folder else "is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return "is not writable" if probe == folder else f"is not writable ({probe} is read-only)"
    return ""


if __name__ == "__main__":
    main()
