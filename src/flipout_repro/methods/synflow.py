"""SynFlow (Tanaka, Kunin, Yamins, Ganguli 2020, "Pruning neural networks without any data by iteratively
conserving synaptic flow"): data-free pruning at initialisation.

The synaptic flow ``R = 1^T (prod_l |theta_l|) 1`` is the network's output summed, with every parameter and
buffer replaced by its absolute value, on an all-ones input (section 6, Algorithm 1); a weight's score is
``|dR/dtheta * theta|``. ``rounds`` times the scores are recomputed on the masked network and the mask
set to keep the fraction ``k_t = k^(t/T)`` (``mode=exp``, the paper's) or ``1 - (1 - k) t/T``
(``mode=linear``), ``k = 1 - sparsity``: pruned weights score 0, so they stay pruned.

As the reference code (ganguli-lab/Synaptic-Flow Pruners/pruners.py:178-211, prune.py:5-38): the scoring
network is in evaluation mode (its ``--prune-train-mode`` default), so a BatchNorm layer is the affine map
of its running statistics, taken in absolute value like every other entry of the state dict (biases
too); the input is one all-ones sample of the data's shape. The reference computes in float32 (its
``model.double()`` is commented out): ``dtype=float64`` is offered for deep networks whose flow would
overflow float32.

Each round's mask is made by ``prune_to`` with the run's budget (global as the reference's default
``--mask-scope global``; uniform is its ``local``), on a private mask set of the model's copy; the run's
masks are then set by its schedule (``one_shot`` at step 0) from the last round's scores, in which the
weights outside the final mask score -1, so ``prune_to`` to the target gives exactly that mask.
``cut=reference`` counts and cuts each round as the reference does instead (:func:`reference_cut`), with the
kept fraction as the reference is given it (``saliency.reference_keep``), and the run ends on its final mask
(force.outside_score).
Differences and their effect: docs/fidelity.md (SynFlow).
"""
from __future__ import annotations

import copy
from typing import Iterator

import torch
from torch import nn

from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.budgets import Budget
from flipout_repro.sparsity.masking import Masks, prunable_weights, prune_to
from flipout_repro.methods.force import outside_score
from flipout_repro.methods.saliency import Batch, ScoredAtInit, reference_keep

MODES = ("exp", "linear")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
CUTS = ("exact", "reference")


def keep_fractions(keep: float, rounds: int, mode: str) -> list[float]:
    """k_1..k_T of the reference's prune_loop (prune.py:17-20): ``keep ** ((t + 1) / T)`` or linear."""
    if mode == "exp":
        return [keep ** ((t + 1) / rounds) for t in range(rounds)]
    return [1.0 - (1.0 - keep) * ((t + 1) / rounds) for t in range(rounds)]


@torch.no_grad()
def reference_cut(scores: list[torch.Tensor], masks: list[torch.Tensor], kept: float) -> None:
    """The reference's global mask (Pruners/pruners.py:12-30): ``k = int((1 - kept) N)``, the threshold
    the k-th smallest score, and every weight scoring at most it pruned (ties with it too); nothing when
    ``k < 1``."""
    flat = torch.cat([s.flatten() for s in scores])
    k = int((1.0 - kept) * flat.numel())
    if k < 1:
        return
    threshold = torch.kthvalue(flat, k).values
    for s, m in zip(scores, masks):
        m.copy_((s > threshold).to(m.dtype))


def synflow_scores(net: nn.Module, weights: list[nn.Parameter], shape: tuple[int, ...]) -> list[torch.Tensor]:
    """``|dR/dw * w|`` for ``weights`` of ``net`` (already linearised: every entry non-negative), with
    ``R`` the sum of the output on one all-ones input of ``shape`` (C, H, W or features)."""
    dtype = weights[0].dtype
    out = net(torch.ones((1, *shape), dtype=dtype, device=weights[0].device))
    grads = torch.autograd.grad(out.sum(), weights, allow_unused=True)
    return [torch.zeros_like(w) if g is None else (g * w).detach().abs() for g, w in zip(grads, weights)]


@torch.no_grad()
def linearise(net: nn.Module) -> None:
    """Every floating entry of ``net``'s state dict (parameters, BatchNorm's running statistics) to its
    absolute value, in place (the reference's ``linearize``, Pruners/pruners.py:184-191)."""
    for t in net.state_dict().values():
        if t.is_floating_point():
            t.abs_()


def progressive_synflow(model: nn.Module, shape: tuple[int, ...], target: float, rounds: int, mode: str = "exp",
                        budget: Budget | str = "global", dtype: str = "float32",
                        cut: str = "exact") -> list[torch.Tensor]:
    """The rounds on a copy of ``model``; the last round's scores, ``force.outside_score(cut)`` outside the
    final mask (-1, or -inf for ``cut=reference``: the run's event then keeps the reference's final mask)."""
    net = copy.deepcopy(model).eval().to(DTYPES[dtype])
    linearise(net)
    named = prunable_weights(net)
    weights = [p for _, p in named]
    for w in weights:
        w.requires_grad_(True)
    absolute = [w.detach().clone() for w in weights]
    masks = Masks([n for n, _ in named], weights, [torch.ones_like(w) for w in weights])
    keep = reference_keep(target) if cut == "reference" else 1.0 - target
    scores: list[torch.Tensor] = absolute
    for t, kept in enumerate(keep_fractions(keep, rounds, mode), start=1):
        with torch.no_grad():
            torch._foreach_copy_(weights, torch._foreach_mul(absolute, masks.values))
        scores = synflow_scores(net, weights, shape)
        if cut == "reference":
            reference_cut(scores, masks.values, kept)
        else:
            # the last round prunes exactly to the target (1 - (1 - s) may differ from s in floating point)
            prune_to([s.float() for s in scores], masks, target if t == rounds else 1.0 - kept, budget)
    return [torch.where(m.bool(), s.float(), torch.full_like(s, outside_score(cut), dtype=torch.float32))
            for s, m in zip(scores, masks.values)]


class SynFlow(ScoredAtInit):
    """Iterative synaptic flow at initialisation (data free); pruned weights stay pruned."""

    any_pattern = False
    #: why config refuses pattern=nm (config/validate.py): the rounds prune the whole network
    pattern_refusal = ("whose rounds prune by the flow of the whole network: a final N:M cut would drop"
                       " weights its last round kept")

    def __init__(self, name: str = "synflow", rounds: int = 100, mode: str = "exp", dtype: str = "float32",
                 cut: str = "exact") -> None:
        super().__init__(name)
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"method.rounds={rounds!r} must be an integer >= 1: e.g. method.rounds=100 (the paper's)")
        if mode not in MODES:
            raise ValueError(f"method.mode={mode!r} must be one of {list(MODES)}: e.g. method.mode=exp")
        if dtype not in DTYPES:
            raise ValueError(f"method.dtype={dtype!r} must be one of {list(DTYPES)}: e.g. method.dtype=float64")
        if cut not in CUTS:
            raise ValueError(f"method.cut={cut!r} must be one of {list(CUTS)}: e.g. method.cut=reference")
        self.rounds, self.mode, self.dtype, self.cut = rounds, mode, dtype, cut
        self._scores: list[torch.Tensor] | None = None

    def use_budget(self, budget: Budget) -> None:
        """``cut=reference`` ranks over all layers, as the reference's default."""
        if self.cut == "reference" and (budget.kind != "global" or budget.dense_first or budget.dense_last):
            raise ConfigError("budget", budget.kind, "does not apply to method.cut=reference, which ranks over all"
                              " layers as the reference's --mask-scope global", "use budget=global, or method.cut=exact")
        super().use_budget(budget)

    def bind(self, model: nn.Module, masks: Masks) -> None:
        """Refuse a model with no weight to score."""
        if not masks.params:
            raise ConfigError("method", self.name, f"has no Conv2d or Linear weight of {type(model).__name__}"
                              " to score", "pick a model with Conv2d or Linear layers")
        super().bind(model, masks)

    def on_train_start(self, batches: Iterator[Batch], target: float, epochs: int, steps_per_epoch: int) -> None:
        """The rounds, on a copy of the model; only the shape of one training batch is used."""
        if target <= 0:
            self._scores = [torch.ones_like(p) for p in self.masks.params]
            return
        x, _ = next(iter(batches))
        self._scores = progressive_synflow(self.model, tuple(x.shape[1:]), target, self.rounds, self.mode,
                                           self.budget, self.dtype, self.cut)
