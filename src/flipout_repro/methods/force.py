"""FORCE (de Jorge et al. 2021, "Progressive Skeletonization"): progressive pruning at initialisation.

Before training, T = ``steps`` iterations; iteration t keeps the fraction
``k_t = k^(t/T)`` (``mode=exp``) or ``k_t = 1 - (1 - k) t/T`` (``mode=linear``) of the weights, with
``k = 1 - sparsity``. Each iteration starts from the dense initial weights theta0, sets the currently
pruned entries to zero (no gradient hooks), averages ``g = dL/dtheta`` at ``theta0 * m`` over ``batches``
training batches, and scores ``S = |theta0 * g|``; the new mask keeps the global top ``k_t`` of S, so a
weight pruned earlier can come back. Iterative SNIP (methods/iter_snip.py) differs only in the score
``|theta0 * m * g|`` and in masks that only ever shrink.

Masks inside the iterations are made by ``prune_to`` on a private mask set of the model's copy; the
real masks are set by the run's schedule (``one_shot`` at step 0 by default) from the last iteration's
scores, in which the weights outside the final mask score -1: ``prune_to`` to the target then yields
exactly the final mask of the iterations. With ``cut=reference`` the kept fractions start from the kept
fraction as the reference is given it (``--pruning_factor 0.1`` for sparsity 0.9: ``saliency.reference_keep``),
and the weights outside score -inf, so the run ends on the reference's final mask (:func:`outside_score`).

Defaults (ours; the reference code's values are set by the FORCE presets, docs/fidelity.md (FORCE)):
``steps=300`` (not checked against the paper's text; the reference README runs 60, its code defaults to
10), ``mode=exp`` (both), ``batches=1`` (1 for CIFAR-10, 10 for CIFAR-100: the reference README),
``loss=cross_entropy`` (the reference scores with ``nll_loss`` on raw logits: ``loss=nll_raw_logits``),
``init=model`` (the reference re-draws every Conv2d/Linear weight kaiming-normal fan_in before scoring
and trains those weights: ``init=kaiming_normal``, applied here to the run's model itself). Our
choices: when the steps need more batches than an epoch holds, the epoch's batches are reused in order
(the reference draws a fresh shuffled batch each time); ``cut=exact``: iteration t prunes exactly
``round(N (1 - k_t))`` weights, ties broken by position, where the reference keeps ``int(N k_t)`` plus
every weight tied with the cut (all of them when the cut falls on the zero saliencies of dead units).
One weight apart suffices for the later iterations to diverge as with other batches; ``cut=reference``
follows the reference's rule.
"""
from __future__ import annotations

import copy
from typing import Iterator

import numpy as np
import torch
from torch import nn

from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.budgets import Budget
from flipout_repro.sparsity.masking import Masks, prunable_weights, prune_to
from flipout_repro.methods.saliency import (BatchSource, ScoredAtInit, average_gradients, check_init, check_loss,
                                             reference_keep, reinitialise)

MODES = ("exp", "linear")
#: How an iteration turns its scores into the iterations' own mask. ``exact`` (ours): prune exactly
#: ``round(N (1 - k_t))`` weights with ``prune_to``, ties broken by position, the last iteration to the run's
#: target. ``reference``: the FORCE reference's rule (naver/force pruning/pruning_algos.py:110-125,
#: 164-168, 181-201), see :func:`reference_cut`; with the same weights and batches it gives the
#: reference's masks. Either way the run's masks are set by ``prune_to`` at the schedule's event.
CUTS = ("exact", "reference")


def keep_fractions(keep: float, steps: int, mode: str, cut: str = "exact") -> list[float]:
    """k_1..k_T: the fraction of weights kept after each iteration (k_T = ``keep``)."""
    if mode == "exp" and cut == "reference":  # the reference's float64 expression, to the last bit
        return [float(np.exp(0 - (t * (0 - np.log(keep)) / steps))) for t in range(1, steps + 1)]
    if mode == "exp":
        return [keep ** (t / steps) for t in range(1, steps + 1)]
    return [1 - (1 - keep) * t / steps for t in range(1, steps + 1)]


@torch.no_grad()
def reference_cut(scores: list[torch.Tensor], keep: list[torch.Tensor], kept: float,
                  revive: bool) -> list[torch.Tensor]:
    """Set ``keep`` (in place) as the reference does; return the scores it ranked.

    For Iterative SNIP the weights outside the current ``keep`` first score the global minimum
    (pruning_algos.py:183-186). Then the ``int(N * kept)``-th largest score is the cut and every weight
    scoring at least the cut is kept (pruning_algos.py:116-124): more than ``int(N * kept)`` when scores
    tie with it, and all of them when the cut is the minimum (for Iterative SNIP that re-admits pruned
    weights, as the reference does).
    """
    if not revive:
        low = torch.stack([s.min() for s in scores]).min()
        scores = [torch.where(k.bool(), s, low) for s, k in zip(scores, keep)]
    flat = torch.cat([s.flatten() for s in scores])
    count = max(1, int(flat.numel() * kept))  # the reference fails on 0; keep one weight instead
    cut = torch.topk(flat, count, sorted=False).values.min()
    for s, k in zip(scores, keep):
        k.copy_(s >= cut)
    return scores


def progressive_scores(model: nn.Module, source: BatchSource, target: float, steps: int, mode: str,
                       batches: int, revive: bool, budget: Budget | str = "global", loss: str = "cross_entropy",
                       cut: str = "exact") -> list[torch.Tensor]:
    """Run the iterations on a copy of ``model``; return final scores (:func:`outside_score` outside the final
    mask).

    ``revive=True`` is FORCE (dense theta0 each iteration, score ``|theta0 * g|``, fresh masks);
    ``revive=False`` is Iterative SNIP (score ``|theta0 * a * g|`` on the network ``theta0 * a``, where
    ``a`` marks the weights never pruned so far: the mask itself with ``cut=exact``, where masks only
    shrink). ``budget`` ranks over all layers (global, the papers') or within each layer (uniform, ``cut=exact``
    only).
    """
    net = copy.deepcopy(model)
    named = prunable_weights(net)
    params = [p for _, p in named]
    theta0 = [p.detach().clone() for p in params]
    # the iterations' own masks (of the copy): prune_to with cut=exact, reference_cut with cut=reference
    masks = Masks([n for n, _ in named], params, [torch.ones_like(p) for p in params])
    alive = [torch.ones_like(p) for p in params]
    scores: list[torch.Tensor] = [torch.ones_like(p) for p in params]
    # cut=reference: the kept fraction as the reference is given it (--pruning_factor 0.1 for sparsity 0.9)
    keep = reference_keep(target) if cut == "reference" else 1.0 - target
    for t, kept in enumerate(keep_fractions(keep, steps, mode, cut), start=1):
        with torch.no_grad():
            torch._foreach_copy_(params, torch._foreach_mul(theta0, masks.values if revive else alive))
        grads = average_gradients(net, params, source.take(batches), loss)
        if revive:
            scores = [(w0 * g).abs() for w0, g in zip(theta0, grads)]
        else:
            scores = [(w0 * a * g).abs() for w0, a, g in zip(theta0, alive, grads)]
        if cut == "reference":
            scores = reference_cut(scores, masks.values, kept, revive)
        else:
            if revive:
                for m in masks.values:
                    m.fill_(1.0)
            # the last iteration prunes exactly to the target (1 - (1 - s) may differ from s in floating point)
            prune_to(scores, masks, target if t == steps else 1.0 - kept, budget)
        if not revive:
            torch._foreach_mul_(alive, masks.values)
    return [torch.where(m.bool(), s, torch.full_like(s, outside_score(cut))) for s, m in zip(scores, masks.values)]


def outside_score(cut: str) -> float:
    """The score of the weights outside the iterations' final mask. ``exact``: -1, below every score, so the
    run's event prunes them first. ``reference``: -inf, which ``prune_to`` counts as pruned already, so the
    event keeps exactly the reference's final mask whenever it holds at least the target's zeros (the
    reference's ``int(N k_T)`` kept may be one below the target's ``N - round(N s)``), and prunes on to the
    target by score where the reference kept more (ties at its cut)."""
    return float("-inf") if cut == "reference" else -1.0


class FORCE(ScoredAtInit):
    """FORCE: progressive pruning at initialisation in which pruned weights can come back."""

    revive = True
    any_budget = False  # its iterations prune inside on_train_start (budget global or uniform)

    def __init__(self, name: str = "force", steps: int = 300, mode: str = "exp",
                 batches: int = 1, loss: str = "cross_entropy", init: str = "model",
                 cut: str = "exact") -> None:
        super().__init__(name)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"method.steps={steps!r} must be an integer >= 1: e.g. method.steps=60")
        if mode not in MODES:
            raise ValueError(f"method.mode={mode!r} must be one of {list(MODES)}: e.g. method.mode=exp")
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            raise ValueError(f"method.batches={batches!r} must be an integer >= 1 (1 for CIFAR-10, 10 for CIFAR-100)")
        self.steps, self.mode, self.batches = steps, mode, batches
        self.loss = check_loss(loss)
        self.init = check_init(init)
        if cut not in CUTS:
            raise ValueError(f"method.cut={cut!r} must be one of {list(CUTS)}: e.g. method.cut=reference")
        self.cut = cut
        self._scores: list[torch.Tensor] | None = None

    def use_budget(self, budget: Budget) -> None:
        """``cut=reference`` ranks over all layers, as the reference code."""
        if self.cut == "reference" and budget.kind != "global":
            raise ConfigError("budget", budget.kind, "does not apply to method.cut=reference, which ranks over all"
                              " layers as the reference code", "use budget=global, or method.cut=exact")
        super().use_budget(budget)

    def on_train_start(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], target: float,
                       epochs: int, steps_per_epoch: int) -> None:
        """Re-initialise the model if ``init`` asks (the weights then trained), then the T iterations on a
        copy of it; keeps the final scores."""
        # the reference re-draws before pruning whatever the sparsity (train_cifar_tiny_imagenet.py:126-145)
        reinitialise(self.model, self.init)
        if target <= 0:
            self._scores = [torch.ones_like(p) for p in self.masks.params]
            return
        need = self.steps * self.batches
        source = BatchSource(batches, need, steps_per_epoch)
        self._scores = progressive_scores(self.model, source, target, self.steps, self.mode, self.batches,
                                          self.revive, self.budget, self.loss, self.cut)
