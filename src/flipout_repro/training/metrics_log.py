"""A run's metrics: metrics.jsonl (one JSON record a line) and TensorBoard scalars of the same records, and
the cut back to a checkpoint when a run resumes, so that no record is lost or doubled.

A scalar's tag names the unit of its x axis (:func:`scalars`):

- ``per_epoch/<key>`` (``per_epoch/test_acc``, ``per_epoch/sparsity_layer/<layer>``): one point per epoch,
  at the epoch's number;
- ``per_step/<type>/<key>`` (``per_step/prune/sparsity``, ``per_step/prune/kept/<layer>``,
  ``per_step/mask_update/dropped``, ``per_step/mask_update/dropped_layer/<layer>``): one point per prune event
  or mask update, at the optimizer step it came after;
- ``run_end/...`` (analysis/run_end.py): one point, at the last epoch.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from flipout_repro.rundir import RunDir, atomic_write_text, jsonable, open_append, real_folder

#: the tag prefixes: what the x axis of a scalar counts
PER_EPOCH, PER_STEP, RUN_END = "per_epoch", "per_step", "run_end"


def scalars(record: dict[str, Any]) -> list[tuple[str, float, int]]:
    """A metrics record's numbers as ``(tag, value, x)``: an epoch record's at its epoch under ``per_epoch/``,
    any other record's (a prune event, a mask update) at its optimizer step under ``per_step/<type>/``;
    a dict of numbers (per layer) one tag per entry below its key."""
    kind = record.get("type", "epoch")
    prefix, x = (PER_EPOCH, record.get("epoch", 0)) if kind == "epoch" else (f"{PER_STEP}/{kind}", record.get("step", 0))
    out = []
    for key, value in record.items():
        if key in ("type", "epoch", "step"):
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        out += [(f"{prefix}/{key}" + (f"/{sub}" if sub is not None else ""), v, int(x)) for sub, v in items
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return out


class MetricsLog:
    """Append-only metrics.jsonl plus TensorBoard scalars for the same records (and, given ``tracker``, the
    same scalars to W&B or MLflow: training/trackers.py)."""

    def __init__(self, run: RunDir, replay: list[dict[str, Any]] | None = None, tracker: Any = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run, self.tracker = run, tracker
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
        items = scalars(record)
        for tag, value, x in items:
            self._tb.add_scalar(tag, value, x)
        if self.tracker is not None:
            self.tracker.scalars(items)

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
