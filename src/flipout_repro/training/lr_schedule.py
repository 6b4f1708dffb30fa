"""The learning-rate schedule: a pure factor of the epoch, and the torch scheduler that applies it.

The rate is set once per epoch, before the epoch trains, as in STR (RAIVNLab/STR main.py:131-133 calls
the policy with the epoch only; ``iteration`` is unused by every policy in utils/schedulers.py), and as
our loop does (``lr_scheduler.step()`` after each epoch, trainer.py). Epochs here are
counted from 0, as in STR.

- ``step``: lr x gamma at each milestone (torch's MultiStepLR).
- ``cosine``: STR's ``cosine_lr`` (utils/schedulers.py:39-52): 0.5 (1 + cos(pi (e - W) / (E - W))) lr
  for epoch e >= W, with E = ``epochs``; the last epoch trains at a small positive rate (the cosine
  reaches 0 only at e = E, which is never trained).
- warm-up of W = ``warmup_epochs`` epochs before either: lr (e + 1) / W in epoch e < W, STR's
  ``_warmup_lr`` (utils/schedulers.py:82-83; the first epoch trains at lr / W, not at 0). STR has no
  warm-up before ``multistep_lr`` (schedulers.py:69-79): warm-up followed by ``step`` is our extension,
  with the milestones still counted from epoch 0.
- ``triangle``: airbench's per-step schedule (KellerJordan/cifar10-airbench f1c599c,
  legacy/airbench94.py:381-390): the factor rises linearly from 0.2 to 1 over the first int(0.23 T) of
  the run's T steps, then falls linearly to 0.07 at step T; step s (from 0) trains with factor(s). Its
  scheduler is stepped after every optimizer step (``per_step``), not once per epoch.
"""
from __future__ import annotations

import math
import warnings
from bisect import bisect_right
from typing import Sequence

import torch


def lr_factor(epoch: int, schedule: str, warmup_epochs: int, epochs: int, milestones: Sequence[int],
              gamma: float) -> float:
    """The multiple of the base rate that epoch ``epoch`` (from 0) trains with."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))
    if schedule == "step":
        return gamma ** bisect_right(sorted(milestones), epoch)  # as MultiStepLR: x gamma from a milestone on
    raise ValueError(f"optim.schedule={schedule!r} is not a schedule: use step or cosine")


def milestone_epochs(milestones: Sequence[int], milestones_of: int, epochs: int) -> list[int]:
    """``optim.milestones`` (epochs of a ``milestones_of``-epoch run) as epochs of this ``epochs``-epoch
    run, rounded half up, at least 1: 150 and 250 of 350 are 17 and 29 of 40."""
    return [max(1, int(m * epochs / milestones_of + 0.5)) for m in milestones]


#: airbench's triangle: the factor at step 0, where the peak of 1 falls (a fraction of the steps), the factor
#: at the last step (legacy/airbench94.py:381-390)
TRIANGLE = (0.2, 0.23, 0.07)


def triangle_factor(step: int, steps: int) -> float:
    """The multiple of the base rate that step ``step`` (from 0) of a ``steps``-step run trains with."""
    start, peak, end = TRIANGLE
    warm = int(steps * peak)
    if step < warm:
        return start + (1.0 - start) * step / warm
    return 1.0 + (end - 1.0) * (step - warm) / (steps - warm)


class PerStepLR(torch.optim.lr_scheduler.LambdaLR):
    """A LambdaLR of the step: the loop calls ``step()`` after every optimizer step (``per_step``), also after
    a step a method took in the optimizer's place (RigL's mask updates), where torch would warn that the
    optimizer has not stepped; the rate is a function of the step count alone, so the order does not matter."""

    per_step = True

    def step(self, epoch: int | None = None) -> None:
        """The next step's rate."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
            super().step()


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup_epochs: int, epochs: int,
                   milestones: Sequence[int], gamma: float,
                   steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler whose ``step()`` after each epoch sets the next epoch's rate.

    ``step`` without warm-up stays torch's MultiStepLR, bit for bit the rates of runs made before these
    knobs existed. Everything else is a LambdaLR of :func:`lr_factor`, a pure function of the epoch, so
    a resumed run (the scheduler's ``last_epoch`` and the optimizer's rate come from the checkpoint) sets
    exactly the rates of an uninterrupted one.
    """
    if schedule == "triangle":
        steps = epochs * steps_per_epoch
        return PerStepLR(optimizer, lambda step: triangle_factor(step, steps))
    if schedule == "step" and warmup_epochs == 0:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    milestones = list(milestones)

    def factor(epoch: int) -> float:
        return lr_factor(epoch, schedule, warmup_epochs, epochs, milestones, gamma)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
