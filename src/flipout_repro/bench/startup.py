"""``flipout-bench --startup``: where a whole ``flipout-train`` process spends its time.

Each run is a fresh ``python -m flipout_repro.cli`` process in a fresh results folder, with
``FLIPOUT_PHASES`` set (phases.py): the run marks its phase boundaries and this module adds the process's
start (just before it is spawned) and its exit (when it has ended). The breakdown is the time between the
marks: interpreter and CLI imports, Hydra's config, the package's import, config checks and data, build,
the run's setup, the first step, the training after it, the run's end (analysis, figures, summary) and
the process's exit. A run's *fixed cost* is everything but the training after the first step. With
``--against CMD`` another command (e.g. the original code's script) is timed in turns with ours, so that
both see the same load on the machine.

The floor under the fixed cost: each run is followed by a fresh ``python -c "import torch"``, timed the
same way. Importing torch is the one part of the fixed cost no change of this package can remove (on a
2-core machine 1.3-2.9 s from one start to the next), so the table shows it and the fixed cost beyond it,
the part that is this package's own.

In a sweep (``flipout-train -m`` with the default launcher) the jobs run one after the other in one
process, so torch, Hydra and the package are imported once: with ``--sweep-jobs N`` one such process of N
jobs (``seed=0,...,N-1``) is timed as well, and each job after the first gets its own fixed cost (from
the end of the previous job to its first step, plus the end of its run).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flipout_repro.training.phases import ENV

#: the quickstart with FlipOut to 0.996 over 40 epochs
DEFAULT_OVERRIDES = ["experiment=quickstart", "method=flipout", "sparsity=0.996", "epochs=40"]

#: (label, mark it starts at, mark it ends at); None: the process's spawn or its exit
PHASES = [
    ("python + CLI imports", None, "cli"),
    ("Hydra config + torch", "cli", "job"),
    ("package import", "job", "imported"),
    ("config check + data", "imported", "data"),
    ("build", "data", "built"),
    ("run setup", "built", "train_start"),
    ("first step", "train_start", "first_step"),
    ("training after it", "first_step", "train_end"),
    ("end of run", "train_end", "done"),
    ("process exit", "done", None),
]
TRAINING = "training after it"


def run_failure(overrides: list[str], code: int, stderr: str) -> Exception:
    """Why a timed ``flipout-train`` process failed, in one line: its own error line (Hydra's hint to set
    HYDRA_FULL_ERROR left out); a ValueError (bad input, exit code 2) for a bad override."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    cause = next((ln for ln in lines if ln.startswith("flipout-train:")), lines[-1] if lines else "no message")
    text = f"--overrides {' '.join(overrides)}: flipout-train exited with code {code}: {cause}"
    return ValueError(text) if code == 2 else RuntimeError(text)


def time_run(overrides: list[str], python: str = sys.executable) -> dict[str, Any]:
    """One ``flipout-train`` process with ``overrides``: its whole time, its phases (seconds) and the
    watched modules (phases.WATCHED) already imported at its first step. RuntimeError if it fails."""
    with tempfile.TemporaryDirectory(prefix="flipout-startup-") as tmp:
        marks_file = Path(tmp) / "phases.jsonl"
        cmd = [python, "-m", "flipout_repro.cli", *overrides, f"results_dir={tmp}/results", "progress=false"]
        env = {**os.environ, ENV: str(marks_file)}
        start = time.time()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        end = time.time()
        if proc.returncode != 0:
            raise run_failure(overrides, proc.returncode, proc.stderr)
        marks = [json.loads(line) for line in marks_file.read_text().splitlines()]
    at: dict[str | None, float] = {None: start}
    for m in marks:  # the first job's marks, should the overrides make a sweep
        at.setdefault(m["phase"], m["t"])
    missing = [m for _, a, b in PHASES for m in (a, b) if m is not None and m not in at]
    if missing:
        raise RuntimeError(f"the run marked no {sorted(set(missing))}: is it a finished run, or a sweep?")
    phases = {label: (at[b] if b is not None else end) - at[a] for label, a, b in PHASES}
    first = next(m for m in marks if m["phase"] == "first_step")
    return {"total_s": end - start, "fixed_s": end - start - phases[TRAINING], "phases_s": phases,
            "modules_at_first_step": first["modules"]}


def _job_marks(marks: list[dict]) -> list[dict[str, float]]:
    """The marks of a sweep process split into its jobs: one {phase: time} per job, in order (a job starts
    at its ``job`` mark; the process's ``cli`` mark precedes the first)."""
    jobs: list[dict[str, float]] = []
    for m in marks:
        if m["phase"] == "job":
            jobs.append({})
        if jobs:
            jobs[-1].setdefault(m["phase"], m["t"])
    return jobs


def time_sweep(overrides: list[str], jobs: int, python: str = sys.executable) -> dict[str, Any]:
    """One ``flipout-train -m`` process of ``jobs`` runs (``overrides`` with ``seed=0,...,jobs-1``): its whole
    time, each job's training (first step to last) and fixed cost; for the first job that is from the
    process's start, for every later one from the end of the job before it. RuntimeError if it fails."""
    seeds = "seed=" + ",".join(str(i) for i in range(jobs))
    with tempfile.TemporaryDirectory(prefix="flipout-startup-") as tmp:
        marks_file = Path(tmp) / "phases.jsonl"
        cmd = [python, "-m", "flipout_repro.cli", "-m", *[o for o in overrides if not o.startswith("seed=")],
               seeds, f"results_dir={tmp}/results", "progress=false"]
        start = time.time()
        proc = subprocess.run(cmd, env={**os.environ, ENV: str(marks_file)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        end = time.time()
        if proc.returncode != 0:
            raise run_failure(overrides, proc.returncode, proc.stderr)
        found = _job_marks([json.loads(line) for line in marks_file.read_text().splitlines()])
    need = ("first_step", "train_end", "done")
    if len(found) != jobs or any(k not in j for j in found for k in need):
        raise RuntimeError(f"the sweep marked {len(found)} complete jobs of {jobs}: are some runs finished already?")
    out, prev_end = [], start
    for j in found:
        out.append({"training_s": j["train_end"] - j["first_step"],
                    "fixed_s": (j["first_step"] - prev_end) + (j["done"] - j["train_end"])})
        prev_end = j["done"]
    return {"jobs": jobs, "total_s": end - start, "exit_s": end - prev_end, "per_job": out}


def time_command(command: str | list[str], what: str = "--against") -> float:
    """Seconds a command (a shell line, or an argument list run without a shell) takes, whole process;
    RuntimeError naming ``what`` if it fails."""
    start = time.time()
    proc = subprocess.run(command, shell=isinstance(command, str), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} {command!r} failed (exit code {proc.returncode}): "
                           f"{(proc.stderr.strip().splitlines() or [''])[-1]}")
    return time.time() - start


def time_torch_import(python: str = sys.executable) -> float:
    """Seconds a fresh interpreter takes to ``import torch`` and exit: the floor under a run's fixed cost."""
    return time_command([python, "-c", "import torch"], what="the torch import")


def startup_bench(overrides: list[str] | None = None, runs: int = 3, against: str | None = None,
                  sweep_jobs: int = 0) -> dict[str, Any]:
    """``runs`` timed runs of ``flipout-train overrides`` (default: the quickstart), each followed by one
    of ``against`` when given (interleaved: ours, theirs, ours, ...); then, with ``sweep_jobs`` >= 2, one
    sweep process of that many jobs (:func:`time_sweep`)."""
    if runs < 1:
        raise ValueError(f"--runs={runs} must be >= 1: e.g. --runs 3")
    if sweep_jobs == 1 or sweep_jobs < 0:
        raise ValueError(f"--sweep-jobs={sweep_jobs} must be 0 (no sweep) or >= 2: e.g. --sweep-jobs 3")
    overrides = list(overrides or DEFAULT_OVERRIDES)
    ours, theirs, torch_s = [], [], []
    for _ in range(runs):
        ours.append(time_run(overrides))
        torch_s.append(time_torch_import())
        if against:
            theirs.append(time_command(against))
    for run, floor in zip(ours, torch_s):
        run["torch_import_s"] = floor
        run["fixed_beyond_torch_s"] = run["fixed_s"] - floor
    sweep = {"sweep": time_sweep(overrides, sweep_jobs)} if sweep_jobs else {}
    return {"overrides": overrides, "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "threads": os.environ.get("OMP_NUM_THREADS"), "runs": ours,
            **({"against": against, "against_s": theirs} if against else {}), **sweep}


def format_startup(result: dict[str, Any]) -> str:
    """The breakdown as a table: one column per run and their median, in seconds."""
    runs = result["runs"]
    med = lambda xs: statistics.median(xs)  # noqa: E731
    head = f"{'phase':<22}" + "".join(f"{'run ' + str(i + 1):>9}" for i in range(len(runs))) + f"{'median':>9}"
    lines = [f"flipout-train {' '.join(result['overrides'])}", head, "-" * len(head)]

    def row(label: str, values: list[float]) -> str:
        return f"{label:<22}" + "".join(f"{v:9.2f}" for v in values) + f"{med(values):9.2f}"

    for label, _, _ in PHASES:
        lines.append(row(label, [r["phases_s"][label] for r in runs]))
    lines.append("-" * len(head))
    lines.append(row("fixed cost", [r["fixed_s"] for r in runs]))
    if all("torch_import_s" in r for r in runs):
        lines.append(row("  import torch alone", [r["torch_import_s"] for r in runs]))
        lines.append(row("  beyond it", [r["fixed_beyond_torch_s"] for r in runs]))
    lines.append(row("whole process", [r["total_s"] for r in runs]))
    if result.get("against_s"):
        lines.append(row("--against", result["against_s"]))
    if result.get("sweep"):
        sw = result["sweep"]
        fixed = [j["fixed_s"] for j in sw["per_job"]]
        training = [j["training_s"] for j in sw["per_job"]]
        lines.append(f"\none sweep process of {sw['jobs']} jobs (-m seed=0..{sw['jobs'] - 1}): whole {sw['total_s']:.2f} s;"
                     f" fixed cost of the first job {fixed[0]:.2f} s, of each further job"
                     f" {med(fixed[1:]):.2f} s (median; {', '.join(f'{f:.2f}' for f in fixed[1:])}),"
                     f" process exit {sw['exit_s']:.2f} s; training per job"
                     f" {', '.join(f'{t:.2f}' for t in training)} s")
    first = runs[0]["modules_at_first_step"]
    lines.append(f"\nfixed cost = whole process - training after the first step; import torch alone = a fresh"
                 f" `python -c \"import torch\"` after each run, the part of the fixed cost no package can remove;"
                 f" watched modules imported before the first step: {', '.join(first) or 'none'}")
    return "\n".join(lines)
