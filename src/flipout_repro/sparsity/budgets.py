"""Layer budgets (``budget=``): how a prune event's zeros are shared out among the prunable layers.

- ``global``: one ranking over all layers (one threshold); each layer gets what its scores earn.
- ``uniform``: every layer the same sparsity (its own ranking in each layer).
- ``erk``: Erdős–Rényi-Kernel (Evci et al. 2020, "Rigging the Lottery", section 3): layer density
  proportional to ``sum(shape) / prod(shape)``, i.e. (n_in + n_out + k_h + k_w) / (n_in n_out k_h k_w) for
  a Conv2d and (n_in + n_out) / (n_in n_out) for a Linear, scaled so the kept weights add up to the
  target; a layer whose density would exceed 1 is made dense and the rest re-solved (RigL's
  rigl/sparse_utils.py:90-207 at d39fc7d, ``get_sparsities_erdos_renyi`` with ``erk_power_scale=1``).

``dense_first`` / ``dense_last`` keep the first / last prunable layer dense; the other layers then take
all the zeros, so the whole network still lands on the target (RigL's reference instead leaves such a
layer out of the count: rigl/imagenet_resnet/imagenet_train_eval.py:246-255 and 519-534).

The number of zeros of an event is counted by the schedule's rule (:func:`event_zeros`): over all layers
(``global``, and every budget with a dense layer or ``erk``) or per layer (``uniform``). A budget with a
dense layer or ``erk`` then splits that exact total into per-layer integer counts (:func:`apportion`).
This module is a leaf: it imports only flipout_repro.errors of the package (masking imports it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from flipout_repro.errors import ConfigError

BUDGETS = ("global", "uniform", "erk")
COUNTS = ("exact", "remove_floor", "keep_floor")


def target_zeros(total: int, sparsity: float) -> int:
    """The exact number of zeros that ``sparsity`` asks for among ``total`` weights (nearest integer)."""
    return int(math.floor(sparsity * total + 0.5))


def event_zeros(total: int, kept: int, sparsity: float, count: str = "exact", fraction: float | None = None) -> int:
    """Zeros among ``total`` weights (``kept`` of them surviving) after a prune event:

    - ``exact``: the nearest count to ``sparsity`` (:func:`target_zeros`);
    - ``remove_floor``: ``floor(fraction * kept)`` more (the FlipOut code's ``int(rate * num_unpruned)``);
    - ``keep_floor``: ``floor((1 - sparsity) * total)`` kept (the SNIP and FORCE codes' ``int(n * keep)``).
    """
    if count == "remove_floor":
        return total - kept + int(math.floor(fraction * kept))
    if count == "keep_floor":
        return total - int(math.floor((1 - sparsity) * total))
    return target_zeros(total, sparsity)


@dataclass(frozen=True)
class Budget:
    """A layer budget: ``kind`` in :data:`BUDGETS`, and which end layers stay dense."""

    kind: str = "global"
    dense_first: bool = False
    dense_last: bool = False

    def __post_init__(self) -> None:
        if self.kind not in BUDGETS:
            raise ConfigError("budget", self.kind, f"is not a budget (one of {', '.join(BUDGETS)})",
                              "e.g. budget=erk, or leave it out for the method's own (its conf/method yaml)")

    def dense(self, layers: int) -> set[int]:
        """Indices of the layers kept dense among ``layers`` prunable layers."""
        return ({0} if self.dense_first else set()) | ({layers - 1} if self.dense_last else set())

    def plain(self) -> bool:
        """True for ``global`` or ``uniform`` without a dense layer (the per-unit counts of before)."""
        return self.kind != "erk" and not (self.dense_first or self.dense_last)


def check_config(name: str, dense_first: bool, dense_last: bool, pattern: str, method: str, takes: bool) -> None:
    """ConfigError for an unknown ``budget``, or for one a method that sets its layers' sparsity itself
    (``takes`` False: FORCE, Iterative SNIP, STR, Hoyer-Square) cannot use: it ranks over all layers
    (global) or within each (uniform), with no dense layer and no pattern."""
    Budget(name)
    if takes:
        return
    for key, value, fine in (("budget", name, ("global", "uniform")), ("budget.dense_first", dense_first, (False,)),
                             ("budget.dense_last", dense_last, (False,)), ("pattern", pattern, ("unstructured",))):
        if value not in fine:
            fix = "use budget=global (all layers) or budget=uniform (each on its own)" if key == "budget" else \
                f"drop {key}"
            raise ConfigError(key, value, f"does not apply to method={method}, which sets its layers' sparsity"
                              " itself", fix)


def erk_raw(shape: Sequence[int]) -> float:
    """ERK's unscaled density of a weight of ``shape``: sum of the dimensions over their product."""
    return sum(shape) / math.prod(shape)


def erk_densities(shapes: Sequence[Sequence[int]], density: float, dense: set[int] = frozenset()) -> list[float]:
    """Per-layer densities: ``eps * erk_raw`` with eps solving sum(density_l n_l) = density * N, the layers
    in ``dense`` (and every layer eps would push past 1) at 1.

    As RigL's loop (rigl/sparse_utils.py:128-189): solve eps over the free layers, then, if the largest
    density exceeds 1, make the layer(s) with the largest raw density dense and solve again.
    """
    sizes = [math.prod(s) for s in shapes]
    raw = [erk_raw(s) for s in shapes]
    fixed = set(dense)
    while True:
        free = [i for i in range(len(shapes)) if i not in fixed]
        rhs = density * sum(sizes) - sum(sizes[i] for i in fixed)  # kept weights the free layers must hold
        if rhs < -1e-9 * max(1, sum(sizes)):
            raise ConfigError("budget", "erk", f"cannot keep {density:.6g} of the weights: the dense layers"
                              f" alone hold {sum(sizes[i] for i in fixed)} of {sum(sizes)}",
                              "set budget.dense_first/dense_last=false or lower sparsity")
        if not free:
            return [1.0] * len(shapes)
        eps = max(rhs, 0.0) / sum(raw[i] * sizes[i] for i in free)
        top = max(raw[i] for i in free)
        if eps * top <= 1:
            return [1.0 if i in fixed else eps * raw[i] for i in range(len(shapes))]
        fixed |= {i for i in free if raw[i] == top}


def check(shapes: Sequence[Sequence[int]], sparsity: float, budget: Budget) -> None:
    """ConfigError when ``budget`` cannot reach ``sparsity`` (the dense layers hold too many weights)."""
    sizes = [math.prod(s) for s in shapes]
    dense = budget.dense(len(shapes))
    kept_dense = sum(sizes[i] for i in dense)
    if sparsity > 0 and kept_dense > (1 - sparsity) * sum(sizes) + 1e-9:
        key = "budget.dense_first" if 0 in dense else "budget.dense_last"
        raise ConfigError(key, True, f"keeps {kept_dense} of {sum(sizes)} weights dense, more than the"
                          f" {(1 - sparsity) * sum(sizes):.0f} that sparsity={sparsity:g} keeps",
                          "set it to false, or lower sparsity")


def layer_zeros(shapes: Sequence[Sequence[int]], already: Sequence[int], zeros: int, budget: Budget) -> list[int]:
    """Per-layer zeros adding up to exactly ``zeros`` for a ``uniform`` or ``erk`` budget (dense layers get
    none). Layers never lose zeros they already have (``already``); the rounding is largest remainder."""
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    dense = budget.dense(len(shapes))
    if budget.kind == "erk":
        dens = erk_densities(shapes, 1 - zeros / total, dense)
        quotas = [(1 - d) * n for d, n in zip(dens, sizes)]
    else:
        rest = sum(n for i, n in enumerate(sizes) if i not in dense)
        quotas = [0.0 if i in dense else zeros * n / rest for i, n in enumerate(sizes)]
    upper = [already[i] if i in dense else n for i, n in enumerate(sizes)]
    return apportion(quotas, list(already), upper, zeros)


def apportion(quotas: Sequence[float], lower: Sequence[int], upper: Sequence[int], total: int) -> list[int]:
    """Integers within [lower, upper] adding up to ``total``, as close to ``quotas`` as largest remainder
    gets: a quota outside its bounds is pinned there and the others rescaled to the rest."""
    if not sum(lower) <= total <= sum(upper):
        raise ConfigError("sparsity", total, f"zeros cannot fit between {sum(lower)} and {sum(upper)}")
    pinned: dict[int, int] = {}
    while True:
        free = [i for i in range(len(quotas)) if i not in pinned]
        rest = total - sum(pinned.values())
        weight = sum(quotas[i] for i in free)
        scaled = {i: (quotas[i] * rest / weight if weight > 0 else rest / len(free)) for i in free}
        out = {i: min(max(q, lower[i]), upper[i]) for i, q in scaled.items() if not lower[i] <= q <= upper[i]}
        if not out:
            break
        pinned.update({i: int(v) for i, v in out.items()})
    counts = dict(pinned) | {i: int(math.floor(q)) for i, q in scaled.items()}
    short = total - sum(counts.values())
    for i in sorted(scaled, key=lambda i: (-(scaled[i] - math.floor(scaled[i])), i))[:short]:
        counts[i] += 1
    if sum(counts.values()) != total:  # every layer pinned at a bound: cannot happen within the check above
        raise ConfigError("sparsity", total, "zeros could not be shared out within the layers' bounds")
    return [counts[i] for i in range(len(quotas))]
