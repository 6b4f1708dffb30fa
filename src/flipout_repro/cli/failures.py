"""The one failure style of every console entry point: one line on stderr, ``<prog>: error: <message>``
(the message names the key or path, the value and the fix), and an exit code that says what happened:

    0    done (a finished run that is skipped is done too; a sweep: every job done)
    1    an unexpected error (a bug, or a model a tool cannot handle: with a traceback), or a failure of
         the system (no space left on device, a permission): the message names the exception
    2    bad input: a config value, a data set, a run folder or a command-line argument; nothing was written
    3    training failed: it diverged, or ended short of its target sparsity (a schedule whose prune events
         did not reach it); the failure is recorded in the run's summary.json
    4    the run folder is in use by another process
    5    a sweep (``-m``) in which some jobs did not finish (each failed on its own code above; the
         others ran): the closing list names each with why
    6    stopped at a prune event that left a layer no weight (``on_collapse=stop``): recorded in the
         run's summary.json (status failed, stop_reason layer_collapse)
    7    a file of a streamed data set that cannot be read, met during training or evaluation: the run folder
         exists (its checkpoint is the last epoch's end); replace or remove the file and the same command
         resumes (``dataset.verify=true`` names every such file before a run starts, with code 2)
    130  interrupted by Ctrl-C (SIGINT); during training after writing a checkpoint: the same command
         resumes the run (a sweep stops there too). Printed as ``<prog>: interrupted: ...``, not an error
    143  stopped by SIGTERM (what a cluster sends before pre-emption) after writing a checkpoint: the same
         command resumes the run (a sweep stops there too)

Imports of the package happen inside the functions: ``--help`` of an entry point stays fast.
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, NoReturn, TypeVar

T = TypeVar("T")

BAD_INPUT, DIVERGED, LOCKED, SWEEP_FAILED, INTERRUPTED, UNEXPECTED = 2, 3, 4, 5, 143, 1
COLLAPSED, BAD_DATA_FILE, INTERRUPTED_BY_USER = 6, 7, 130
#: the codes of a run stopped on purpose, printed as ``interrupted``, not as an error
STOPPED = (INTERRUPTED, INTERRUPTED_BY_USER)


def exit_code(exc: BaseException) -> int:
    """The documented exit code for ``exc``."""
    from flipout_repro.analysis.finished_run import RunFolderError
    import signal

    from hydra.errors import ConfigCompositionException, OverrideParseException

    from flipout_repro.errors import ConfigError
    from flipout_repro.data import DataError, DataFileError
    from flipout_repro.rundir import RunLocked
    from flipout_repro.training.collapse import LayerCollapsed
    from flipout_repro.training.trainer import TrainingDiverged, TrainingInterrupted
    from flipout_repro.run import SparsityNotReached

    if isinstance(exc, DataFileError):
        return BAD_DATA_FILE
    if isinstance(exc, (ConfigError, DataError, RunFolderError, ValueError, ConfigCompositionException,
                        OverrideParseException)):
        return BAD_INPUT  # Hydra's: a config group or option that does not exist (flipout-bench --model)
    if isinstance(exc, LayerCollapsed):
        return COLLAPSED
    if isinstance(exc, TrainingInterrupted) and getattr(exc, "signal", None) == signal.SIGINT:
        return INTERRUPTED_BY_USER
    if isinstance(exc, (TrainingDiverged, SparsityNotReached)):
        return DIVERGED
    if isinstance(exc, RunLocked):
        return LOCKED
    if isinstance(exc, TrainingInterrupted):
        return INTERRUPTED
    return UNEXPECTED


def message(exc: BaseException) -> str:
    """The one-line message for ``exc`` (unexpected errors are named by their type)."""
    text = str(exc).replace("\n", " ")
    if exit_code(exc) == UNEXPECTED:
        text = f"{type(exc).__name__}: {text[:500]}"
    return text


def fail(prog: str, text: str, code: int, kind: str = "error") -> NoReturn:
    """Print ``<prog>: <kind>: <text>`` on stderr (once: nothing else prints it) and exit with ``code``."""
    print(f"{prog}: {kind}: {text}", file=sys.stderr)
    sys.exit(code)


def guard(prog: str, body: Callable[[], T]) -> T:
    """Run ``body``; any failure becomes one line and its exit code, not a traceback."""
    try:
        return body()
    except Exception as exc:  # noqa: BLE001 - every failure gets the one style
        logging.getLogger("flipout_repro").debug("%s failed", prog, exc_info=True)
        fail(prog, message(exc), exit_code(exc))
