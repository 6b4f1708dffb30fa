"""Timestamps of a run's phases, for ``flipout-bench --startup`` (training/startup.py).

When the environment variable ``FLIPOUT_PHASES`` names a file, :func:`mark` appends one JSON line to it
per phase boundary: the phase's name, the wall-clock time and which of the heavy optional modules
(:data:`WATCHED`) are imported by then. Without the variable a mark does nothing but read it, so the
marks stay in the code of every run at no cost. The boundaries, in order: ``cli`` (flipout-train's
entry point runs), ``job`` (Hydra composed the config), ``imported`` (the package's run code is
imported), ``data`` (config checked, data set loaded), ``built`` (model, method, optimizer),
``train_start``, ``first_step`` (the first optimizer step is done), ``train_end`` (the last epoch and
its checkpoint are done) and ``done`` (figures, summary and the rest of the run's end are written).
"""
from __future__ import annotations

import json
import os
import sys
import time

#: the environment variable that turns the marks on: the file they are appended to
ENV = "FLIPOUT_PHASES"

#: modules a run should not need before its first step (reported with every mark)
WATCHED = ("torchvision", "matplotlib", "matplotlib.pyplot", "torch.utils.tensorboard", "torch._dynamo",
           "pandas", "PIL")


def mark(name: str) -> None:
    """Append ``{"phase": name, "t": <time.time()>, "modules": [...]}`` to $FLIPOUT_PHASES, if it is set."""
    path = os.environ.get(ENV)
    if not path:
        return
    record = {"phase": name, "t": time.time(), "modules": [m for m in WATCHED if m in sys.modules]}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)  # no link
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
