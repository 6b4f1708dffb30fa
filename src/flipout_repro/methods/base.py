"""The interface every pruning method implements.

A method is a criterion (``scores``: higher = keep) plus optional training-time hooks. The training
loop calls the hooks in this order every step and never asks which method it runs:

    loss = CE + regularizer(model); backward
    if modifies_grads: grads *= masks;  after_backward(model);  grads *= masks
    optimizer.step() (unless replaces_step(s));  weights *= masks
    if mask_update(s) returns an update: masking.drop_and_grow(...); the optimizer state of the newly
        active weights zeroed; after_mask_update(result)          (dynamic sparse training: SET, RigL)
    after_step(model)

and at every prune event of the schedule: ``prune_to(scores(model), masks, sparsity, budget)`` then
``after_prune()``. ``on_train_start`` runs once before the first step (pruning at initialisation);
``on_epoch_end`` after each epoch's last step, before the epoch is evaluated. A method that prunes by
itself (a threshold, a learned threshold) does not touch the masks: after each epoch's evaluation and
scheduled events the loop asks ``prune_due(epoch)`` and prunes through the same path, so its prune is
recorded like every other.

``s`` is the step's 0-based index (the number of optimizer steps taken before it). Dynamic sparse
training changes the masks between events: ``mask_update(s)`` sees the weights after the step and the
gradients of the step's batch (dense: the loop does not mask them unless ``modifies_grads``), and
returns the drop and grow scores and the per-layer count; ``drop_and_grow`` is the one path that
regrows. ``summary_stats`` adds method-specific numbers to summary.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from flipout_repro.sparsity.budgets import Budget
from flipout_repro.sparsity.masking import Masks, Regrowth


@dataclass
class MaskUpdate:
    """A dynamic-sparse-training update: per layer, drop the ``counts[l]`` active weights of lowest
    ``drop_scores`` and grow as many of highest ``grow_scores`` (masking.drop_and_grow, with
    ``regrow_dropped``); ``info`` holds numbers for the update's record (the drop fraction)."""

    drop_scores: list[torch.Tensor]
    grow_scores: list[torch.Tensor]
    counts: list[int]
    regrow_dropped: bool = True
    info: dict[str, float] = field(default_factory=dict)


class Method:
    """Base class: no regulariser, no hooks. Subclasses override what they need."""

    #: False for methods that never prune (dense training).
    prunes: bool = True
    #: True where the final sparsity is an outcome of training (STR, Hoyer-Square's threshold), not the
    #: requested target; the run then says so and records target and achieved sparsity separately.
    sparsity_is_outcome: bool = False
    #: False where the method sets its layers' sparsity itself (FORCE's iterations, learned or regularised
    #: thresholds): config refuses ``budget=`` and ``pattern=`` other than the defaults for it.
    any_budget: bool = True
    #: False where the masks change outside the schedule's events (dynamic sparse training's regrowth,
    #: masking.drop_and_grow, knows no N:M groups): config refuses ``pattern=nm`` for it.
    any_pattern: bool = True
    #: why, for a method with ``any_pattern`` False: the refusal's words after its name
    pattern_refusal: str = "whose regrowth keeps no N:M groups"

    def __init__(self, name: str) -> None:
        self.name = name
        #: the run's layer budget (``budget=``, set by training.build): how the method's own prunes share
        #: the zeros among layers (FORCE's iterations, Hoyer-Square's target)
        self.budget = Budget("global")
        self.model: nn.Module | None = None
        self.masks: Masks | None = None

    def use_budget(self, budget: Budget) -> None:
        """Prune by ``budget`` where the method prunes by itself; a ConfigError where it cannot."""
        self.budget = budget

    def bind(self, model: nn.Module, masks: Masks) -> None:
        """Attach to the model and its masks before training (allocate per-weight state here)."""
        self.model, self.masks = model, masks

    def check_data(self, labels: torch.Tensor, num_classes: int) -> None:
        """Called once the training data is loaded, before anything is written: a ConfigError where the
        method cannot use it (GraSP's per-class samples). ``labels``: the training labels."""

    def compile_hooks(self) -> None:
        """Called once when the run has ``compile=true``: compile per-step bookkeeping if it helps."""

    def on_train_start(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], target: float,
                       epochs: int, steps_per_epoch: int) -> None:
        """Called once before the first step (and before any event at step 0).

        ``batches`` iterates over (augmented, normalised) training batches; ``target`` is the run's
        target sparsity.
        """

    def on_epoch_end(self, epoch: int) -> None:
        """Called after the last step of ``epoch`` (1-based), before evaluation and prune events."""

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the loss, or None."""
        return None

    @property
    def modifies_grads(self) -> bool:
        """Whether ``after_backward`` changes gradients (then they are masked again after it).

        The default looks at whether a subclass overrides ``after_backward``."""
        return type(self).after_backward is not Method.after_backward

    def after_backward(self, model: nn.Module) -> None:
        """Modify gradients after backward (they are masked before and, if ``modifies_grads``, after)."""

    def after_step(self, model: nn.Module) -> None:
        """Bookkeeping after the optimizer step and the weight masking."""

    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """Per-weight saliency for every prunable weight, in ``masks.names`` order (higher = keep)."""
        raise NotImplementedError(f"method {self.name} defines no pruning score")

    def replaces_step(self, step: int) -> bool:
        """True where the mask update of step ``step`` (0-based) takes the place of its optimizer step
        (RigL's reference code); the step's gradients then serve only the update."""
        return False

    def mask_update(self, step: int) -> MaskUpdate | None:
        """The drop-and-grow update due at step ``step`` (0-based), or None (every method but the dynamic
        ones). Called after the optimizer step and the weight masking, while ``.grad`` holds the step's
        batch gradients."""
        return None

    def after_mask_update(self, result: Regrowth) -> None:
        """Called after the masks changed by a :meth:`mask_update`."""

    def summary_stats(self) -> dict[str, Any]:
        """Method-specific numbers for summary.json (the run's end)."""
        return {}

    def prune_due(self, epoch: int) -> tuple[float, str] | None:
        """(sparsity, budget) to prune to now, after ``epoch``'s evaluation, for a method that decides when
        and how much to prune by itself (Hoyer-Square's threshold, STR's learnt thresholds); None
        otherwise. The loop then calls ``prune_to(scores(model), masks, sparsity, budget)`` and
        ``after_prune()``, as at a scheduled event."""
        return None

    def after_prune(self) -> None:
        """Called after the masks changed at a prune event."""

    def epoch_stats(self) -> dict[str, float]:
        """Method-specific numbers for the epoch's log record (one host sync per epoch is fine)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers needed to resume the method."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
