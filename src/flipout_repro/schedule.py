"""Sparsity schedules: pure functions from (target, epochs, steps per epoch) to prune events.

A schedule never looks at the model. ``PruneEvent.step`` counts optimizer steps already taken when the
event fires: 0 is before training, ``e * steps_per_epoch`` is the end of epoch ``e`` (after that epoch's
evaluation, so the accuracy just before each event is on record).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


class ScheduleError(ValueError):
    """A schedule that cannot be realised with the requested target and number of epochs."""


@dataclass(frozen=True)
class PruneEvent:
    """Prune to ``sparsity`` once ``step`` optimizer steps have been taken."""

    step: int
    sparsity: float


@dataclass(frozen=True)
class NoPruning:
    """No events: dense training, or methods whose sparsity comes from training itself."""

    def events(self, target: float, epochs: int, steps_per_epoch: int) -> list[PruneEvent]:
        """Always empty."""
        return []


@dataclass(frozen=True)
class Periodic:
    """The FlipOut paper's geometric schedule (METHODS.md, "Paper schedule").

    Each event removes ``rate`` of the surviving weights; ``k = ceil(log(1-s)/log(1-rate))`` events reach
    the target ``s`` and fire every ``f = round(epochs/(k+1))`` epochs, at the end of epochs
    f, 2f, ..., kf (never on the last epoch, so the network is always fine-tuned after the last prune).
    Event ``i`` prunes to ``1-(1-rate)^i``; the last event prunes exactly to the target.
    ``frequency`` overrides ``f`` (0 = derive it, as the paper does).

    Our choice for short runs: when rounding up would put the k-th event on or after the last epoch
    (e.g. k = 7 in 20 epochs: round(2.5) = 3, 7 * 3 = 21), ``f`` is rounded down instead. At the paper's
    350 epochs this never happens, so its frequencies are unchanged.
    """

    rate: float = 0.5
    frequency: int = 0

    def num_events(self, target: float) -> int:
        """k: the number of events that reach ``target`` at ``rate`` per event."""
        if target <= 0:
            return 0
        # The tolerance keeps exact powers such as 1 - 1/256 at k = 8, not 9, despite rounding.
        return max(1, math.ceil(math.log(1 - target) / math.log(1 - self.rate) - 1e-9))

    def period(self, target: float, epochs: int) -> int:
        """f: epochs between events (the paper's table: 117/70/50/39/32 at 350 epochs)."""
        if self.frequency:
            return self.frequency
        k = self.num_events(target)
        f = int(math.floor(epochs / (k + 1) + 0.5))
        return f if k * f < epochs else epochs // (k + 1)

    def events(self, target: float, epochs: int, steps_per_epoch: int) -> list[PruneEvent]:
        """The k events, each at the end of an epoch."""
        if not 0 < self.rate < 1:
            raise ScheduleError(f"schedule.rate={self.rate} must be in (0, 1), e.g. 0.5")
        k = self.num_events(target)
        if k == 0:
            return []
        f = self.period(target, epochs)
        if f < 1 or k * f >= epochs:
            need = k * self.frequency + 1 if self.frequency else k + 1
            raise ScheduleError(
                f"schedule=periodic needs {k} prune events to reach sparsity={target} at rate"
                f" {self.rate}, each at the end of its own epoch before the last one, which"
                f" epochs={epochs} cannot hold: use epochs>={need} or a lower sparsity"
            )
        out = []
        for i in range(1, k + 1):
            s = target if i == k else 1 - (1 - self.rate) ** i
            out.append(PruneEvent(step=i * f * steps_per_epoch, sparsity=min(s, target)))
        return out
