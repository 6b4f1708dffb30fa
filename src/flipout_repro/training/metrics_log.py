"""A run's metrics: metrics.jsonl (one JSON record a line) and TensorBoard scalars of the same records, and
the cut back to a checkpoint when a run resumes, so that no record is lost or doubled.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from flipout_repro.rundir import RunDir, atomic_write_text, jsonable, open_append, real_folder


class MetricsLog:
    """Append-only metrics.jsonl plus TensorBoard scalars for the same records."""

    def __init__(self, run: RunDir, replay: list[dict[str, Any]] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run = run
        self._fh = open_append(run.metrics)  # a symlink planted at metrics.jsonl is refused
        if replay is not None:
            # A resumed run: TensorBoard is rebuilt from the records kept in metrics.jsonl, so it holds
            # each of them once (a purge by epoch cannot tell a mid-epoch prune record of a killed attempt
            # from one before the checkpoint, and events not yet flushed when it was killed are lost).
            shutil.rmtree(run.tb, ignore_errors=True)
        self._tb = SummaryWriter(log_dir=str(real_folder(run.tb, run.path)))  # tb/: never a link
        for record in replay or []:
            self._scalars(record)

    def write(self, record: dict[str, Any]) -> None:
        """One JSON line (flushed at once) and its numbers as TensorBoard scalars."""
        self._fh.write(json.dumps(record, default=jsonable) + "\n")
        self._fh.flush()
        self._scalars(record)

    def _scalars(self, record: dict[str, Any]) -> None:
        kind = record.get("type", "epoch")
        step = record.get("step", 0) if kind == "mask_update" else record.get("epoch", 0)  # many an epoch
        for key, value in record.items():
            if key in ("type", "epoch", "step"):
                continue
            if isinstance(value, dict):
                for sub, v in value.items():
                    self._tb.add_scalar(f"{key}/{sub}", v, step)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tb.add_scalar(key if kind == "epoch" else f"{kind}/{key}", value, step)

    def close(self) -> None:
        """Flush and close both sinks."""
        self._fh.close()
        self._tb.flush()
        self._tb.close()


def truncate_metrics(path: Path, last_step: int, last_epoch: int) -> list[dict[str, Any]]:
    """Drop the records written after the checkpoint a run resumes from (at optimizer step ``last_step``,
    after epoch ``last_epoch``) and return those kept.

    Records are cut by their ``step``: a prune event in the middle of an epoch carries the number of the
    epoch before it, so cutting by epoch would keep the record of an event the resumed run replays.
    Records without a step (none are written so) fall back to the epoch. Lines that are not JSON objects
    (cut short by a crash, or damaged) are dropped.
    """
    if not path.exists():
        return []
    lines, keep = [], []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        at, limit = (rec.get("step"), last_step) if "step" in rec else (rec.get("epoch", 0), last_epoch)
        if isinstance(at, (int, float)) and not isinstance(at, bool) and at <= limit:
            lines.append(line)
            keep.append(rec)
    atomic_write_text(path, "".join(x + "\n" for x in lines))
    return keep
