"""flipout-train's hooks into Hydra (:class:`TrainHooks`, a callback registered in conf/config.yaml).

- Before Hydra creates its own output folder under ``results_dir`` (which would fail with a traceback),
  ``results_dir`` is checked: a file or a read-only folder is one line and exit code 2.
- A sweep's (``-m``) bookkeeping: each job records its outcome (done, skipped, failed) in its Hydra output
  folder, and once every job has run the list of the jobs that did not finish is printed, with why (the
  sweep is then marked failed so that the command exits with SWEEP_FAILED, cli/failures.py), and the
  closing line: how many jobs were done, skipped and failed, and the report command to run next.

Outcomes travel as files because under the joblib and SLURM launchers the jobs run in other processes
(or on other machines) than the one that waits for the sweep; the callback's ``on_multirun_end`` runs
where the command was started, under every launcher.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from flipout_repro.cli.failures import BAD_INPUT, fail
from flipout_repro.training import ranks_env

OUTCOME_FILE = "job_outcome.json"

#: set by SweepOutcomes.on_multirun_end when some job of the sweep did not finish
state: dict[str, Any] = {"failed": []}


def task_overrides() -> list[str]:
    """The job's command-line overrides as typed (``epochs=${nope}`` stays unresolved)."""
    return [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)]


def record(status: str, code: int = 0, error: str = "") -> None:
    """This job's outcome (``done``; ``skipped``: finished before; ``failed`` with its exit code and
    message), in its output folder; in a data-parallel job (hydra/launcher=slurm_multi) rank 0's only."""
    if ranks_env.rank_of(os.environ) != 0:
        return
    hc = HydraConfig.get()
    outcome = {"job": int(hc.job.num), "overrides": task_overrides(), "status": status, "code": code,
               "error": error}
    from flipout_repro.rundir import atomic_write_text

    folder = Path(hc.runtime.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / OUTCOME_FILE, json.dumps(outcome) + "\n")


class TrainHooks(Callback):
    """Checks ``results_dir`` before Hydra writes there; collects a sweep's outcomes when it ends."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_results_dir(config)
        _prepare_output(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_results_dir(config)
        self.started = time.time()
        state["failed"] = []

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        outcomes = self.outcomes(Path(str(config.hydra.sweep.dir)))
        failed = [o for o in outcomes if o.get("status") not in ("done", "skipped")]
        state["failed"] = failed
        if failed:
            lines = [f"flipout-train: {len(failed)} of {len(outcomes)} jobs of the sweep did not finish:"]
            for o in failed:
                lines.append(f"  job {o['job']} ({' '.join(o.get('overrides') or [])}): exit code {o['code']}:"
                             f" {o['error']}")
            print("\n".join(lines), file=sys.stderr, flush=True)
        print(closing_line(outcomes, str(OmegaConf.select(config, "results_dir", default="results"))), flush=True)

    def outcomes(self, folder: Path) -> list[dict[str, Any]]:
        """The outcome of each job of the sweep in ``folder`` (Hydra's sweep folder), in job order; a job
        that left none is failed ("the job's process died?")."""
        jobs = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)) \
            if folder.is_dir() else []
        found = []
        for job in jobs:
            if job.stat().st_mtime < self.started - 1:  # a folder of an earlier sweep in the same place
                continue
            try:
                found.append(json.loads((job / OUTCOME_FILE).read_text()))
            except (OSError, ValueError):  # the job's process died before it could say (killed, out of memory)
                found.append({"job": int(job.name), "overrides": [], "status": "failed", "code": 1,
                              "error": f"no outcome recorded (the job's process died?): see its log in {job}"})
        return found


def closing_line(outcomes: list[dict[str, Any]], results_dir: str) -> str:
    """A sweep's last line: how many jobs trained to the end, were skipped (finished before) or failed,
    and the command that reads them, e.g. ``flipout-train: sweep of 12 jobs: 10 done, 2 skipped (finished
    before), 0 failed; next: flipout-report``."""
    count = {k: sum(o.get("status") == k for o in outcomes) for k in ("done", "skipped")}
    failed = len(outcomes) - count["done"] - count["skipped"]
    report = "flipout-report" + ("" if results_dir == "results" else f" --results-dir {shlex.quote(results_dir)}")
    jobs = f"{len(outcomes)} job{'s' if len(outcomes) != 1 else ''}"
    return (f"flipout-train: sweep of {jobs}: {count['done']} done, {count['skipped']} skipped"
            f" (finished before), {failed} failed; next: {report}")


def _check_results_dir(config: DictConfig) -> None:
    """One line and exit code 2 when ``results_dir`` is empty, a file, or cannot be written, or when a
    folder of Hydra's output folder below it is a symbolic link (Hydra's own log folder goes there first,
    and would fail with a traceback or write through the link). Remembers the part of the path that
    exists already: a refused run removes what it created (:func:`discard_output`)."""
    from flipout_repro.config.checks import writable_folder_problem  # here: --help stays fast (no torch)

    value = OmegaConf.select(config, "results_dir", throw_on_resolution_failure=False)
    if value is None:
        return  # not resolvable here: validate names it
    fix = "pass results_dir=DIR, a folder you can write in"
    if not str(value).strip():
        fail("flipout-train", f"results_dir={str(value)!r} is empty: {fix}", BAD_INPUT)
    problem = writable_folder_problem(str(value))
    if problem:
        fail("flipout-train", f"results_dir={str(value)!r} {problem}: {fix}", BAD_INPUT)
    here = Path(str(value)) / "hydra"
    while not here.exists() and not here.is_symlink() and here != here.parent:
        here = here.parent
    state["existed"] = here
    for part in (Path(str(value)) / "hydra", *(Path(str(value)) / "hydra").parents):
        if part.is_symlink() and Path(str(value)) in part.parents:
            fail("flipout-train", f"{part} is a symbolic link: nothing is written through one (remove it)", BAD_INPUT)


def _prepare_output(config: DictConfig) -> None:
    """Create this single run's Hydra output folder before Hydra does, so that a folder that cannot be made
    (``results_dir=/proc/x``) is one line and exit code 2, not Hydra's traceback."""
    value = OmegaConf.select(config, "hydra.run.dir", throw_on_resolution_failure=False)
    if value is None or "existed" not in state:
        return
    folder = Path(str(value))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_created(folder.parent)
        fail("flipout-train", f"results_dir: {folder} cannot be created ({exc.strerror or exc}): pass"
             " results_dir=DIR, a folder you can write in", BAD_INPUT)


def _remove_created(folder: Path) -> None:
    """Remove ``folder`` and the empty folders above it that this command created."""
    stop = state["existed"]
    while folder != stop and stop in folder.parents:
        if folder.is_dir() and not folder.is_symlink():
            try:
                folder.rmdir()
            except OSError:  # not empty: something else lives there
                break
        folder = folder.parent


def discard_output() -> None:
    """A refused single run leaves nothing behind: Hydra's output folder of this job (its ``.hydra/`` and
    job log, nothing else) and the folders above it that this command created are removed."""
    import logging
    import shutil

    if not HydraConfig.initialized() or "existed" not in state:
        return
    hc = HydraConfig.get()
    folder = Path(str(hc.runtime.output_dir))
    for handler in list(logging.getLogger().handlers):  # the job log, open in that folder
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder:
            logging.getLogger().removeHandler(handler)
            handler.close()
    if folder.is_dir() and not folder.is_symlink():
        ours = {".hydra", f"{hc.job.name}.log"}
        if set(os.listdir(folder)) <= ours:
            shutil.rmtree(folder, ignore_errors=True)
    _remove_created(folder)
