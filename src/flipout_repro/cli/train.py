"""Console entry point ``flipout-train``: compose the Hydra config, run it, map failures to exit codes.

Bad input ends with one line on stderr and exit code 2, before anything is trained or written (see
cli/failures.py for every exit code). In a sweep (``-m``) every job's failure is its own: it is logged
and recorded, the other jobs run, and the sweep ends with its closing line (jobs done, skipped, failed;
the report command to run next), the list of the jobs that did not finish and exit code SWEEP_FAILED
(cli/hooks.py). SIGTERM (exit code 143) and Ctrl-C (SIGINT, 130) stop the run or
the sweep, printed as ``interrupted``; the same command resumes.
"""
from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from flipout_repro.config import launch, paths, schema
from flipout_repro.training import phases
from flipout_repro.cli import hooks
from flipout_repro.cli.overrides import check_command_line, print_resolved_notes
from flipout_repro.cli.failures import (BAD_INPUT, COLLAPSED, DIVERGED, INTERRUPTED_BY_USER, STOPPED, SWEEP_FAILED, UNEXPECTED, exit_code, fail,
                                        message)

schema.register()  # run_schema, the first entry of conf/config.yaml's defaults list
launch.register_resolvers()  # ${job_device:}, ${local_jobs:} (sweep and launcher presets), ${paper_batches:}
log = logging.getLogger("flipout_repro")


@hydra.main(version_base="1.3", config_path=paths.config_dir(), config_name="config")
def _main(cfg: DictConfig) -> float | None:
    phases.mark("job")  # Hydra composed the config (flipout-bench --startup)
    from flipout_repro.config.validate import check_overrides
    from flipout_repro.run import SKIPPED, run  # here, not at the top: --help and bad overrides stay fast

    phases.mark("imported")
    in_sweep = _in_sweep()
    try:
        check_overrides(hooks.task_overrides())  # resume=no: only the command line shows it
        summary = run(cfg, hooks.task_overrides())
    except Exception as exc:
        code = exit_code(exc)
        if in_sweep and code not in STOPPED:  # one bad, busy or broken job must not stop the sweep
            log.error("job failed (exit code %d): %s", code, message(exc), exc_info=code == UNEXPECTED)
            hooks.record("failed", code, message(exc))
            return None
        if code == UNEXPECTED and not isinstance(exc, OSError):
            raise  # a bug: Hydra prints the traceback (a full disk or a permission is one line)
        if code == BAD_INPUT:
            hooks.discard_output()  # a refused command leaves nothing behind
        else:
            _log_to_files(message(exc))  # on screen: fail() prints it, once
        if code in STOPPED:
            fail("flipout-train", message(exc), code,
                 kind=f"interrupted by {getattr(getattr(exc, 'signal', None), 'name', 'a signal')}")
        fail("flipout-train", message(exc), code)
    if in_sweep:
        if summary.get("status") == "failed":  # diverged or collapsed in an earlier attempt, skipped now
            code = COLLAPSED if summary.get("stop_reason") == "layer_collapse" else DIVERGED
            hooks.record("failed", code, f"{summary.get('error')} (recorded earlier in {summary.get('run_dir')}"
                                      "/summary.json; resume=false trains it again)")
        else:
            hooks.record("skipped" if summary.get(SKIPPED) else "done")  # skipped: finished before
    return summary.get("final_test_acc")


def _log_to_files(text: str) -> None:
    """``text`` as an ERROR line in the log files only (Hydra's job log), not on the console."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "error: %s", (text,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main() -> None:
    """flipout-train [overrides...]; see README.md and docs/."""
    phases.mark("cli")
    check_command_line("flipout-train", sys.argv[1:])  # --version; lr=0.1 -> "did you mean optim.lr?"
    try:
        _main()
        print_resolved_notes(sys.argv[1:])  # --cfg job: the milestones as epochs of this run
    except KeyboardInterrupt:  # Ctrl-C outside training (composing, loading): nothing to resume from
        fail("flipout-train", "Ctrl-C outside the training loop: the same command starts or resumes the run",
             INTERRUPTED_BY_USER, kind="interrupted by SIGINT")
    if hooks.state["failed"]:
        sys.exit(SWEEP_FAILED)


if __name__ == "__main__":
    main()
