"""Run by torchrun in tests/training/test_distributed.py: ``flipout-train ARGS`` on this rank, then this
rank's final weights, masks, method state and position dumped to ``$DDP_DUMP/rank<RANK>.pt``.

``DDP_STOP_AT=<step>`` with ``DDP_STOP_RANK=<rank>``: that rank alone asks to stop after that step, as its
SIGTERM handler would (the ranks must agree on the step to stop at).
"""
import os
import sys
from pathlib import Path

import torch

from flipout_repro.cli.train import main
from flipout_repro.training.trainer import Trainer

RANK = int(os.environ["RANK"])
original_run, original_step = Trainer.run, Trainer.step


def dump(trainer, state):
    out = Path(os.environ["DDP_DUMP"]) / f"rank{RANK}.pt"
    torch.save({"model": trainer.model.state_dict(), "masks": [m.clone() for m in trainer.masks.values],
                "method": trainer.method.state_dict(), "step": state.step, "epoch": state.epoch,
                "last": state.last}, out)


def run_and_dump(self, state):
    try:
        return original_run(self, state)
    finally:
        dump(self, state)


def step_maybe_stop(self, x, y):
    out = original_step(self, x, y)
    self._steps = getattr(self, "_steps", 0) + 1
    if RANK == int(os.environ.get("DDP_STOP_RANK", -1)) and self._steps == int(os.environ["DDP_STOP_AT"]):
        self.stop_requested = True
    return out


Trainer.run = run_and_dump
if "DDP_STOP_AT" in os.environ:
    Trainer.step = step_maybe_stop
sys.argv = ["flipout-train", *sys.argv[1:]]
main()
