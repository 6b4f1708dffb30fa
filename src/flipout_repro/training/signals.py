"""Stopping a run cleanly: SIGTERM and SIGINT (and the SLURM launcher's pre-emption signal) finish the
current step, write a checkpoint of that exact position and stop; the same command resumes there.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any, Callable, Iterator

from flipout_repro.training.trainer import Trainer, TrainingInterrupted

log = logging.getLogger("flipout_repro")


def preemption_signal() -> signal.Signals:
    """The signal submitit (the SLURM launcher) sends before a time limit or a pre-emption: USR2, or
    what ``SUBMITIT_PREEMPT_SIGNAL`` names."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[list[Callable[[], None]]]:
    """SIGTERM (what SLURM sends before pre-emption) and SIGINT: finish the step, checkpoint, stop.

    Under submitit (the SLURM launcher) the time-limit/pre-emption signal (USR2, or
    ``SUBMITIT_PREEMPT_SIGNAL``) already has a Python handler, which requeues the job and exits on the
    spot, wherever training is. That signal is taken over too: the step is finished and checkpointed
    first, and submitit's handler runs after, so the requeued job resumes from that step. If the signal
    comes after the last step, training ends normally and the yielded list holds submitit's handler, to
    be called once the run is written. A second signal while stopping falls back to the previous handler.
    """
    pending: list[Callable[[], None]] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous: dict[int, Any] = {}
    received: list[int] = []  # the signal that stopped training: SIGINT (Ctrl-C) exits 130, the others 143
    usr = preemption_signal()

    def handler(signum: int, frame: Any) -> None:
        log.warning("received %s: checkpointing after this step", signal.Signals(signum).name)
        received.append(signum)
        trainer.stop_requested = True
        prev = previous.get(signum)
        if signum == usr and callable(prev) and not pending:
            pending.append(lambda: prev(signum, frame))
        _restore(previous)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)  # recorded before the handler can run
        signal.signal(sig, handler)
    if usr not in previous and callable(signal.getsignal(usr)):  # a Python handler, i.e. submitit's
        previous[usr] = signal.getsignal(usr)
        signal.signal(usr, handler)
    stopped = False
    try:
        yield pending
    except TrainingInterrupted as exc:
        stopped = True
        exc.signal = signal.Signals(received[0]) if received else None  # read by cli/failures.exit_code
        raise
    finally:
        _restore(previous)
        if stopped and pending:
            log.info("checkpoint written: handing %s on to the launcher", signal.Signals(usr).name)
            pending.pop()()


def _restore(previous: dict[int, Any]) -> None:
    for sig, old in previous.items():
        if old is not None:  # None: a handler not installed from Python, nothing to put back
            signal.signal(sig, old)
