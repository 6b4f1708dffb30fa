"""Shared pieces of the pruning-at-initialisation methods (SNIP, Iterative SNIP, FORCE).

Connection sensitivity (SNIP, Lee et al. 2019, eq. 6): with a multiplicative mask ``c`` on the weights,
``dL/dc = dL/d(c w) * w``, which at ``c = 1`` is ``g * w`` with ``g = dL/dw``. So the saliency is computed
from ordinary weight gradients, no mask parameters are needed.

All scoring runs on a deep copy of the model, so the real model's weights, gradients and BatchNorm
running statistics are untouched by it.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from flipout_repro.sparsity.masking import prunable_weights
from flipout_repro.methods.base import Method

Batch = tuple[torch.Tensor, torch.Tensor]
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    # The FlipOut repository's SNIP: nll_loss on raw logits, i.e. -mean(logit of the true class).
    "nll_raw_logits": F.nll_loss,
}
#: ``method.init``: ``model`` keeps the model's own initialisation; the others re-draw every Conv2d and
#: Linear weight (biases and BatchNorm untouched) with kaiming_normal_(nonlinearity="relu"), fan_in or
#: fan_out, as the FORCE reference's ``--init normal_kaiming`` (its default) and ``normal_kaiming_fout``.
INITS: dict[str, str | None] = {"model": None, "kaiming_normal": "fan_in", "kaiming_normal_fan_out": "fan_out"}


class BatchSource:
    """Hands out training batches for scoring, cycling when more are needed than the iterator holds.

    ``batches`` is the one-epoch iterator the loop gives ``on_train_start``. When ``needed`` exceeds
    ``available`` (the steps of one epoch), the batches drawn are kept and reused in order once the
    iterator runs out (our choice; the FORCE reference draws a fresh shuffled batch each time). When it
    does not, nothing is kept, so no extra memory is used.
    """

    def __init__(self, batches: Iterator[Batch], needed: int, available: int) -> None:
        self._it = iter(batches)
        self._cache: list[Batch] | None = [] if needed > available else None
        self._next = 0

    def take(self, n: int) -> list[Batch]:
        """The next ``n`` batches."""
        out = []
        for _ in range(n):
            try:
                batch = next(self._it)
                if self._cache is not None:
                    self._cache.append(batch)
            except StopIteration:
                if not self._cache:
                    raise RuntimeError("the training data ran out of batches while scoring") from None
                batch = self._cache[self._next % len(self._cache)]
                self._next += 1
            out.append(batch)
        return out


def average_gradients(model: nn.Module, params: list[nn.Parameter], batches: list[Batch],
                      loss: str = "cross_entropy") -> list[torch.Tensor]:
    """dL/dw for every tensor in ``params``, averaged over ``batches`` (only those gradients are computed)."""
    loss_fn = LOSSES[loss]
    total = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        grads = torch.autograd.grad(loss_fn(model(x), y), params)
        torch._foreach_add_(total, [g.detach() for g in grads])
    torch._foreach_div_(total, float(len(batches)))
    _mean_over_ranks(total)
    return total


def _mean_over_ranks(tensors: list[torch.Tensor]) -> None:
    """In a data-parallel run each rank scored its shard of the same batches (training/shard.py): the mean
    over ranks is the gradient of the whole batches (exactly so for equal shards), and every rank gets the
    same scores. Nothing in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(part.view_as(t))


def reference_keep(sparsity: float) -> float:
    """The kept fraction ``1 - sparsity`` as the decimal the reference codes are given (0.9 gives 0.1, not
    1 - 0.9 = 0.09999999999999998): FORCE's ``--pruning_factor`` and SynFlow's ``10 ** -compression`` are
    kept fractions, so ``exp(log 0.1)`` keeps ``N/10`` there, where ``1 - 0.9`` would keep one weight fewer."""
    return float(1 - Decimal(repr(float(sparsity))))


def check_loss(loss: str) -> str:
    """``loss`` if it names a known scoring loss, else a ValueError naming the choices."""
    if loss not in LOSSES:
        raise ValueError(f"method.loss={loss!r} must be one of {sorted(LOSSES)}")
    return loss


def check_init(init: str) -> str:
    """``init`` if it names a known re-initialisation, else a ValueError naming the choices."""
    if init not in INITS:
        raise ValueError(f"method.init={init!r} must be one of {list(INITS)}: e.g. method.init=kaiming_normal")
    return init


@torch.no_grad()
def reinitialise(model: nn.Module, init: str) -> None:
    """Re-draw ``model``'s Conv2d/Linear weights in place, in module order, from torch's global generator.

    The FORCE reference (naver/force train_cifar_tiny_imagenet.py:126-138) does this to the network it
    then prunes and trains, before scoring; ``init="model"`` leaves the weights alone.
    """
    mode = INITS[check_init(init)]
    if mode is None:
        return
    for _, w in prunable_weights(model):
        nn.init.kaiming_normal_(w, mode=mode, nonlinearity="relu")


class ScoredAtInit(Method):
    """A method whose scores are computed once in ``on_train_start`` and kept (SNIP, FORCE, Iter-SNIP);
    the schedule's events (one_shot by default) turn them into masks."""

    _scores: list[torch.Tensor] | None = None

    @torch.no_grad()
    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """The scores computed at initialisation."""
        if self._scores is None:
            raise RuntimeError(f"method {self.name} scores are computed in on_train_start, before training")
        return self._scores

    def state_dict(self) -> dict[str, Any]:
        """The scores, for schedules with events after a resume."""
        return {"scores": None if self._scores is None else [s.cpu() for s in self._scores]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scores on the weights' device."""
        if state.get("scores") is not None:
            self._scores = [s.to(p.device) for s, p in zip(state["scores"], self.masks.params)]

