"""A run folder that tells its own story: ``run.log`` (the lines flipout-train printed on screen for this
run, every attempt appended under a line that names it) and ``command.txt`` (each attempt's command
line, working directory and overrides), next to config.yaml. Both are written only once the run folder
exists, i.e. after the config, the data and the model passed their checks: bad input writes nothing.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Iterator

from flipout_repro.rundir import open_append
from flipout_repro.training.trainer import TrainingInterrupted

LOG_FILE, COMMAND_FILE = "run.log", "command.txt"
#: the format of Hydra's console and job log lines (hydra/conf/hydra/job_logging/default.yaml)
LINE_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def write_command(folder: Path, attempt: str, overrides: list[str] | None) -> None:
    """Append this attempt's command line (``sys.argv``, shell-quoted), working directory and overrides
    (Hydra's task overrides: in a sweep, this job's own) to ``<folder>/command.txt``."""
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "flipout-train", *sys.argv[1:]]
    if argv[0] in ("__main__.py", "-m", "-c"):  # python -m flipout_repro.cli ...
        argv[0] = "flipout-train"
    lines = [f"# {_now()}: {attempt}", f"command: {shlex.join(argv)}", f"cwd: {os.getcwd()}"]
    if overrides is not None:
        lines.append(f"overrides: {shlex.join(overrides) if overrides else '(none)'}")
    with open_append(folder / COMMAND_FILE) as fh:
        fh.write("\n".join(lines) + "\n\n")


@contextlib.contextmanager
def run_log(folder: Path, attempt: str) -> Iterator[None]:
    """While inside: every log line of the process (the root logger's, what the console shows) is also
    appended to ``<folder>/run.log``, after a line naming the attempt; a failure that ends the run is
    its last line (on screen, flipout-train prints it once)."""
    path = folder / LOG_FILE
    stream = open_append(path)  # a symbolic link planted at run.log is refused, not appended through
    stream.write(f"==== {_now()}: {attempt} ====\n")
    stream.flush()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    except BaseException as exc:
        kind = "interrupted" if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)) else "error"
        text = str(exc).replace("\n", " ") or type(exc).__name__
        handler.handle(logging.getLogger("flipout_repro").makeRecord(
            "flipout_repro", logging.ERROR if kind == "error" else logging.WARNING, __file__, 0,
            "%s: %s", (kind, text), None))
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
        stream.close()
