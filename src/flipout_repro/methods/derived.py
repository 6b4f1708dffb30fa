"""Runs that start from a finished run (their parent): the controls of a pruned run and the levels of
iterative magnitude pruning. Each is a rule that turns the parent's tensors into the child's start mask;
reading the parent and setting the weights is training/derive.py's work, the mask changes in
sparsity/masking.py as every mask does.

- :class:`Control` (Frankle et al. 2021, "Pruning neural networks at initialization: why are we missing
  the mark?", section 5; Su et al. 2020, "Sanity-checking pruning methods: random tickets can win the
  jackpot"): the parent's final mask, changed so that only one thing of it is kept, trained from the
  start with that mask fixed:

  - ``shuffle``: the mask permuted within each layer (its per-layer counts), the parent's initial weights;
  - ``reinit``: the same mask, freshly initialised weights (the parent's init scheme, other draws);
  - ``random_budget``: a random mask with the parent's per-layer counts and fresh weights (a random
    ticket: nothing of the parent but its counts);
  - ``invert``: for a parent that pruned at initialisation, each layer keeps its count of the
    weights its method scored lowest, with the parent's initial weights.

- :class:`IMP` (Frankle & Carbin 2019; Frankle et al. 2020, "Linear mode connectivity and the lottery
  ticket hypothesis"; Renda et al. 2020, "Comparing rewinding and fine-tuning"): level 0 trains dense;
  level l >= 1 keeps the largest-magnitude trained weights of level l-1 (global, the budget's dense layers
  excluded: the output layer, as OpenLTH's ``pruning_layers_to_ignore='fc.weight'``) and trains again from
  the initial weights (``lottery``), the weights at epoch k (``weights``), the trained weights with the
  learning-rate schedule restarted (``lr``), or the trained weights for the schedule's last epochs
  (``finetune``). :func:`ladder` is the sequence of levels.
"""
from __future__ import annotations

import math

import torch

from flipout_repro.errors import ConfigError
from flipout_repro.methods.base import Method
from flipout_repro.sparsity.budgets import Budget

#: the controls, in the order the controls command runs them
CONTROL_KINDS = ("shuffle", "reinit", "random_budget", "invert")
#: what each control takes of its parent, in words (a derived run's summary says it)
CONTROL_TAKES = {
    "shuffle": "the parent's mask permuted within each layer; the parent's initial weights",
    "reinit": "the parent's mask; freshly initialised weights",
    "random_budget": "a random mask with the parent's per-layer counts; freshly initialised weights",
    "invert": "per layer, the parent's count of its lowest-scored weights at initialisation; the parent's"
              " initial weights",
}
#: IMP's rewinding modes, and where each level's weights come from
REWIND = {
    "lottery": "the initial weights (epoch 0)",
    "weights": "the weights at epoch rewind_epoch",
    "lr": "the trained weights of the level before, learning-rate schedule restarted",
    "finetune": "the trained weights of the level before, for the schedule's last finetune_epochs epochs",
}
#: how many weights a level keeps: exact = round((1 - fraction)^l n); reference = OpenLTH's rule, each level
#: removing ceil(fraction x the weights left)
IMP_COUNTS = ("exact", "reference")


class Derived(Method):
    """A method whose start mask comes from a parent run; it never prunes during training."""

    #: training/derive.py sets the start mask and weights from ``parent.run``
    from_parent = True
    #: whether the parent's identity is part of the run's (a control), or the run is fixed without it (an
    #: IMP level: protocol, IMP knobs and sparsity determine its chain)
    parent_in_identity = True
    any_pattern = False
    pattern_refusal = "whose mask comes from its parent"

    def scores(self, model: torch.nn.Module) -> list[torch.Tensor]:
        """A derived run has no prune event; its mask is set at the start (training/derive.py)."""
        raise NotImplementedError(f"method={self.name} sets its mask from its parent, at the start")

    def record_epochs(self) -> list[int]:
        """The epochs whose states (weights, schedule position, data generator) the run keeps in
        ``states/`` for the runs derived from it."""
        return []


class Control(Derived):
    """One control of a finished pruned run (``kind``, :data:`CONTROL_KINDS`); ``of`` is the parent's
    setting in words, filled in from it (config/parent.py), so each method's controls are a series."""

    def __init__(self, name: str = "control", kind: str = "shuffle", of: str = "") -> None:
        super().__init__(name)
        if kind not in CONTROL_KINDS:
            raise ValueError(f"kind={kind!r}: use one of {', '.join(CONTROL_KINDS)}")
        self.kind, self.of = kind, of

    @property
    def fresh_weights(self) -> bool:
        """True where the control trains from newly drawn weights, not the parent's initial ones."""
        return self.kind in ("reinit", "random_budget")

    @property
    def needs_scores(self) -> bool:
        """True where the mask needs the parent method's scores at initialisation (``invert``)."""
        return self.kind == "invert"

    def start_mask(self, parent: list[torch.Tensor], generator: torch.Generator,
                   scores: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """The control's mask from the parent's final mask (``parent``, 0/1 per layer): each layer keeps
        exactly the parent's count. ``generator`` draws the permutations and random scores; ``scores``
        (``invert``): the parent method's scores at initialisation, higher = keep."""
        out = []
        for i, m in enumerate(parent):
            flat = m.detach().flatten().float()
            kept = int(flat.sum())
            if self.kind == "reinit":
                new = flat.clone()
            elif self.kind == "shuffle":
                new = flat[torch.randperm(flat.numel(), generator=generator, device=generator.device)]
            else:
                if self.kind == "random_budget":
                    rank = torch.rand(flat.numel(), generator=generator, device=generator.device)
                else:  # invert: the lowest scores are kept
                    if scores is None:
                        raise ValueError("invert needs the parent method's scores")
                    rank = -scores[i].detach().flatten().float()
                new = torch.zeros_like(flat)
                new[torch.topk(rank, kept, largest=True, sorted=False).indices] = 1.0
            out.append(new.view_as(m).to(m.dtype))
        return out

    def summary_stats(self) -> dict:
        return {"control": self.kind}


class IMP(Derived):
    """Iterative magnitude pruning with rewinding: the level rule and the states the chain needs."""

    parent_in_identity = False

    def use_budget(self, budget: Budget) -> None:
        """IMP ranks all its layers together (global), the budget's dense layers left out."""
        if budget.kind != "global":
            raise ConfigError("budget", budget.kind, "does not apply to method=imp, which ranks the weights of"
                              " all layers together", "use budget=global_dense_last (its default) or budget=global")
        super().use_budget(budget)

    def __init__(self, name: str = "imp", rewind: str = "lottery", rewind_epoch: int = 1, fraction: float = 0.2,
                 count: str = "exact", finetune_epochs: int | None = None) -> None:
        super().__init__(name)
        if rewind not in REWIND:
            raise ValueError(f"rewind={rewind!r}: use one of {', '.join(REWIND)}")
        if count not in IMP_COUNTS:
            raise ValueError(f"count={count!r}: use one of {', '.join(IMP_COUNTS)}")
        if not 0 < float(fraction) < 1:
            raise ValueError(f"fraction={fraction!r}: each level removes a fraction in (0, 1) of the weights left")
        if int(rewind_epoch) < 0:
            raise ValueError(f"rewind_epoch={rewind_epoch!r}: an epoch >= 0")
        self.rewind, self.rewind_epoch, self.fraction = rewind, int(rewind_epoch), float(fraction)
        self.count = count
        self.finetune_epochs = None if finetune_epochs is None else int(finetune_epochs)

    @property
    def start_epoch_of_parent(self) -> int | None:
        """The epoch of the parent's recorded state a level starts from (lottery: 0, weights: k), or None
        where it starts from the parent's trained weights (lr, finetune)."""
        return {"lottery": 0, "weights": self.rewind_epoch}.get(self.rewind)

    def record_epochs(self) -> list[int]:
        """Every level keeps the state the next level rewinds to (level 0 while it trains; a later level
        at its start, which is that same state under its own mask)."""
        k = self.start_epoch_of_parent
        return [] if k is None else [k]

    def kept_counts(self, n: int, levels: int) -> list[int]:
        """Weights kept outside the excluded layers after levels 0..``levels``: ``n`` first."""
        kept = [n]
        for level in range(1, levels + 1):
            if self.count == "exact":
                kept.append(int(round((1 - self.fraction) ** level * n)))
            else:
                kept.append(kept[-1] - math.ceil(self.fraction * kept[-1]))
        return kept

    def ladder(self, total: int, excluded: int, target_zeros: int) -> list[int]:
        """The zeros (over all ``total`` prunable weights) of each level of the chain that ends at
        ``target_zeros``: 0 (level 0, dense), then each level's, until the next would pass the target,
        which the last level prunes to exactly. ``excluded``: the weights of the layers never pruned."""
        n = total - excluded
        if target_zeros > n:
            raise ValueError(f"{target_zeros} zeros do not fit in the {n} weights outside the excluded layers")
        zeros = [0]
        level = 1
        while zeros[-1] < target_zeros:
            z = n - self.kept_counts(n, level)[-1]
            if z <= zeros[-1]:  # a level that removes nothing (tiny n): go straight to the target
                z = target_zeros
            zeros.append(min(z, target_zeros))
            level += 1
        return zeros

    def summary_stats(self) -> dict:
        return {"imp": {"rewind": self.rewind}}
