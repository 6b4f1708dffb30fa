"""Sparsity schedules: pure functions from (target, epochs, steps per epoch) to prune events.

A schedule never looks at the model. ``PruneEvent.step`` counts optimizer steps already taken when the
event fires: 0 is before training, ``e * steps_per_epoch`` is the end of epoch ``e`` (after that epoch's
evaluation, so the accuracy just before each event is on record).

Every schedule takes ``rounding``, the count an event removes:

- ``exact`` (our extension, the default): the event lands on its sparsity to within one weight
  (``budgets.target_zeros``: the nearest count), so the last event lands on the target.
- ``reference`` (the reference codes' rules): a periodic event removes ``floor(rate * surviving)``
  weights (the FlipOut code's ``int(rate * num_unpruned)``), so the final sparsity is what those
  events reach (recorded as achieved): 1 - 2^-10 = 0.9990234375 keeps 19,555 of VGG19's 20,024,000
  weights. A one-shot event keeps ``floor((1 - s) * n)`` weights (the FlipOut code's SNIP, like
  FORCE's code: ``int(n * keep_ratio)``). Cubic, which no reference code of ours prunes with, removes
  ``floor(f * surviving)`` with f the fraction between consecutive levels,
  ``1 - (1 - s_i) / (1 - s_(i-1))`` (our analogue).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from flipout_repro.errors import ConfigError

ROUNDINGS = ("exact", "reference")


def _knob(key: str, value: object, problem: str, fix: str = "") -> ConfigError:
    """A bad knob of the schedule (``schedule.rate``, ...)."""
    return ConfigError(f"schedule.{key}", value, problem, fix)


def _too_short(epochs: int, problem: str) -> ConfigError:
    """A schedule whose knobs are fine but do not fit in ``epochs``."""
    return ConfigError("epochs", epochs, f"is too short for the schedule ({problem})")


@dataclass(frozen=True)
class PruneEvent:
    """Prune to ``sparsity`` once ``step`` optimizer steps have been taken. ``count`` says how the number
    of zeros is rounded (budgets.event_zeros): ``exact`` (nearest to ``sparsity``), ``remove_floor``
    (``floor(fraction * surviving)`` more) or ``keep_floor`` (``floor((1 - sparsity) * n)`` kept)."""

    step: int
    sparsity: float
    count: str = "exact"
    fraction: float | None = None


def check_rounding(rounding: str) -> None:
    """ConfigError unless ``rounding`` is exact or reference."""
    if rounding not in ROUNDINGS:
        raise _knob("rounding", rounding, "must be 'exact' (land on each event's sparsity) or 'reference' (remove"
                    " floor(fraction x surviving) weights, the FlipOut code's)")


def with_rounding(events: list[PruneEvent], rounding: str) -> list[PruneEvent]:
    """``events`` for ``rounding``: unchanged for exact; for reference each event without a count of its
    own removes ``floor(f * surviving)``, f = 1 - (1 - s_i) / (1 - s_(i-1)) (s_0 = 0)."""
    if rounding == "exact":
        return events
    out, previous = [], 0.0
    for ev in events:
        if ev.count == "exact":
            ev = replace(ev, count="remove_floor", fraction=max(0.0, 1 - (1 - ev.sparsity) / (1 - previous)))
        out.append(ev)
        previous = ev.sparsity
    return out


@dataclass(frozen=True)
class NoPruning:
    """No events: dense training, or methods whose sparsity comes from training itself."""

    rounding: str = "exact"

    def __post_init__(self) -> None:
        check_rounding(self.rounding)

    def events(self, target: float, epochs: int, steps_per_epoch: int) -> list[PruneEvent]:
        """Always empty."""
        return []


@dataclass(frozen=True)
class Periodic:
    """The FlipOut paper's geometric schedule (docs/fidelity.md, "FlipOut: the paper presets").

    Each event removes ``rate`` of the surviving weights; ``k = ceil(log(1-s)/log(1-rate))`` events reach
    the target ``s`` and fire every ``f = round(epochs/(k+1))`` epochs, at the end of epochs
    f, 2f, ..., kf (never on the last epoch, so the network is always fine-tuned after the last prune).
    Event ``i`` prunes to ``1-(1-rate)^i``; the last event prunes exactly to the target (``rounding=exact``),
    or every event removes ``floor(rate * surviving)`` weights (``rounding=reference``, the FlipOut code's
    ``int(rate * surviving)``; a target between two levels makes the last event remove less).
    ``frequency`` overrides ``f`` (0 = derive it, as the paper does).

    Our choice for short runs: when rounding up would put the k-th event on or after the last epoch
    (e.g. k = 7 in 20 epochs: round(2.5) = 3, 7 * 3 = 21), ``f`` is rounded down instead. At the paper's
    350 epochs this never happens, so its frequencies are unchanged.
    """

    rate: float = 0.5
    frequency: int = 0
    rounding: str = "exact"

    def __post_init__(self) -> None:
        check_rounding(self.rounding)
        if not 0 < self.rate < 1:
            raise _knob("rate", self.rate, "must be in (0, 1)", "e.g. schedule.rate=0.5 (the paper's)")
        if self.frequency < 0:
            raise _knob("frequency", self.frequency, "must be in [0, inf)", "0 derives it from the epochs, as the paper")

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
        k = self.num_events(target)
        if k == 0:
            return []
        f = self.period(target, epochs)
        if f < 1 or k * f >= epochs:
            need = k * self.frequency + 1 if self.frequency else k + 1
            raise _too_short(epochs, f"schedule=periodic needs {k} prune events to reach sparsity={target} at"
                             f" rate {self.rate}, each at the end of its own epoch before the last one, which"
                             f" epochs={epochs} cannot hold: use epochs>={need} or a lower sparsity")
        out = []
        for i in range(1, k + 1):
            s = target if i == k else 1 - (1 - self.rate) ** i
            ev = PruneEvent(step=i * f * steps_per_epoch, sparsity=min(s, target))
            if self.rounding == "reference" and math.isclose(1 - s, (1 - self.rate) ** i, rel_tol=1e-9):
                ev = replace(ev, count="remove_floor", fraction=self.rate)  # a full step: int(rate * surviving)
            out.append(ev)
        return with_rounding(out, self.rounding)


@dataclass(frozen=True)
class OneShot:
    """One event that prunes straight to the target (SNIP, FORCE, pruning at a given step).

    ``epoch`` = 0 fires before the first step (pruning at initialisation, right after the method's
    ``on_train_start``). ``epoch`` = e > 0 fires after ``round(e * steps_per_epoch)`` optimizer steps:
    a whole e is the end of epoch e (after its evaluation); a fraction such as 2.5 is a step in the
    middle of epoch 3, so any step can be reached. The event must come before the last step, so the
    network is trained after it.

    Our choice: the position is given in (fractional) epochs rather than steps, so that it can be checked
    against ``epochs`` before the data set is loaded and keeps its meaning across data sets.
    """

    epoch: float = 0.0
    rounding: str = "exact"

    def __post_init__(self) -> None:
        check_rounding(self.rounding)

    def events(self, target: float, epochs: int, steps_per_epoch: int) -> list[PruneEvent]:
        """A single event to ``target`` (none when the target is 0)."""
        if not 0 <= self.epoch < epochs:
            raise _knob("epoch", self.epoch, f"must be in [0, epochs={epochs})", "0 prunes at initialisation,"
                        " e prunes after e epochs of training")
        if target <= 0:
            return []
        count = "keep_floor" if self.rounding == "reference" else "exact"  # SNIP's int(n * keep_ratio)
        return [PruneEvent(step=int(math.floor(self.epoch * steps_per_epoch + 0.5)), sparsity=target, count=count)]


@dataclass(frozen=True)
class Cubic:
    """Gradual pruning of Zhu & Gupta 2017: ``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3``.

    Events at ``t = t0 + j dt`` for j = 0..n; the last one prunes exactly to the target ``s_f``. Any
    method's scores can be used (magnitude, FlipOut, WeightMom, ...). The knobs, all our choices where the
    paper leaves them open:

    - ``initial_sparsity``: s_i (0 in the paper's experiments); events at or below 0 are dropped.
    - ``start``, ``end``: t0 and the time the target is reached, as fractions of ``epochs``, each rounded
      to the nearest epoch end (0 = before training). ``end`` must leave at least one epoch of
      fine-tuning.
    - ``every_epochs``: dt in epochs (events at epoch ends, after the evaluation).
    - ``every_steps``: dt in optimizer steps instead, when > 0 (the paper's unit; events mid-epoch).

    n = floor((t_end - t0) / dt), at least 1; when dt does not divide the span, the target is reached at
    t0 + n dt, slightly before t_end.
    """

    initial_sparsity: float = 0.0
    start: float = 0.0
    end: float = 0.5
    every_epochs: int = 1
    every_steps: int = 0
    rounding: str = "exact"

    def __post_init__(self) -> None:
        check_rounding(self.rounding)
        if not 0 <= self.start < 1:
            raise _knob("start", self.start, "must be in [0, 1)", "a fraction of the epochs, e.g. schedule.start=0")
        if not 0 < self.end <= 1:
            raise _knob("end", self.end, "must be in (0, 1]", "a fraction of the epochs, e.g. schedule.end=0.5")
        if self.start >= self.end:
            raise _knob("start", self.start, f"must be below schedule.end={self.end}",
                        "pruning starts before it ends, e.g. schedule.start=0 schedule.end=0.5")
        if self.every_epochs < 1:
            raise _knob("every_epochs", self.every_epochs, "must be in [1, inf)", "e.g. schedule.every_epochs=1")
        if self.every_steps < 0:
            raise _knob("every_steps", self.every_steps, "must be in [0, inf)", "0 uses every_epochs")

    def _check(self, target: float) -> None:
        if not 0 <= self.initial_sparsity <= target:
            raise _knob("initial_sparsity", self.initial_sparsity, f"must be in [0, sparsity={target}]",
                        "it is the sparsity of the first event, e.g. schedule.initial_sparsity=0")

    def sparsity_at(self, j: int, n: int, target: float) -> float:
        """s after the j-th of n intervals: s_f + (s_i - s_f)(1 - j/n)^3 (exactly s_f at j = n)."""
        if j >= n:
            return target
        return target + (self.initial_sparsity - target) * (1 - j / n) ** 3

    def events(self, target: float, epochs: int, steps_per_epoch: int) -> list[PruneEvent]:
        """The n + 1 events t0, t0 + dt, ..., t0 + n dt (those with sparsity <= 0 dropped)."""
        if target <= 0:
            return []
        self._check(target)
        first = int(math.floor(self.start * epochs + 0.5))
        last = int(math.floor(self.end * epochs + 0.5))
        if last >= epochs or last <= first:
            raise _too_short(epochs, f"schedule=cubic with start={self.start}, end={self.end} puts pruning in"
                             f" epochs {first}..{last} of {epochs}: it needs start < end and at least one epoch"
                             " of fine-tuning after the last event; lower schedule.end or raise epochs")
        t0, t_end = first * steps_per_epoch, last * steps_per_epoch
        dt = self.every_steps or self.every_epochs * steps_per_epoch
        n = (t_end - t0) // dt
        if n == 0:  # the span is shorter than one interval: a single step from s_i to s_f
            n, dt = 1, t_end - t0
        out = [PruneEvent(step=t0 + j * dt, sparsity=self.sparsity_at(j, n, target)) for j in range(n + 1)]
        return with_rounding([e for e in out if e.sparsity > 0], self.rounding)
