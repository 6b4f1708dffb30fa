"""SNIP (Lee, Ajanthan, Torr 2019): prune once at initialisation by connection sensitivity.

Before the first step, on ``batches`` training batches (1 in the paper): saliency ``|g * w|`` for every
prunable weight at initialisation, normalised by its sum over all weights (eq. 6), and the global top
``1 - sparsity`` kept. The run's schedule applies the mask; the method's yaml selects ``one_shot`` (at
step 0), so ``method=snip`` alone prunes at initialisation.

``reference_quirks=true`` reproduces the FlipOut repository's SNIP, which produced the FlipOut paper's
SNIP numbers (docs/fidelity.md, FlipOut): the saliency is computed on a copy whose Conv2d/Linear weights are
re-initialised with ``xavier_normal_`` (biases kept) and with ``nll_loss`` applied to the raw logits;
the resulting mask is applied to the original, differently initialised weights. (The reference keeps
the ``int(N (1 - s))`` weights at or above the k-th score; we keep exactly ``N - round(N s)``, ties
broken by position: the masks are identical up to that one-weight rounding.)
"""
from __future__ import annotations

import copy
from typing import Iterator

import torch
from torch import nn

from flipout_repro.sparsity.masking import prunable_weights
from flipout_repro.methods.saliency import BatchSource, ScoredAtInit, average_gradients


class SNIP(ScoredAtInit):
    """Connection sensitivity at initialisation, ranked globally (``budget=uniform``: per layer)."""

    def __init__(self, name: str = "snip", batches: int = 1,
                 reference_quirks: bool = False) -> None:
        super().__init__(name)
        if not isinstance(batches, int) or batches < 1:
            raise ValueError(f"method.batches={batches!r} must be an integer >= 1 (the paper uses 1)")
        self.batches = batches
        self.reference_quirks = bool(reference_quirks)
        self._scores: list[torch.Tensor] | None = None

    def on_train_start(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], target: float,
                       epochs: int, steps_per_epoch: int) -> None:
        """Compute the saliencies once, on a copy of the initial model."""
        taken = BatchSource(batches, self.batches, steps_per_epoch).take(self.batches)
        self._scores = snip_saliency(self.model, taken, self.reference_quirks)


def snip_saliency(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                  reference_quirks: bool = False) -> list[torch.Tensor]:
    """``|g * w| / sum(|g * w|)`` for every prunable weight of ``model``, on a copy of it.

    With ``reference_quirks`` the copy's Conv2d/Linear weights are first re-drawn with
    ``xavier_normal_`` (from torch's global generator) and the loss is ``nll_loss`` on raw logits.
    """
    net = copy.deepcopy(model)
    params = [p for _, p in prunable_weights(net)]
    if reference_quirks:
        with torch.no_grad():
            for p in params:
                nn.init.xavier_normal_(p)
    grads = average_gradients(net, params, batches, "nll_raw_logits" if reference_quirks else "cross_entropy")
    sal = [(g * p.detach()).abs() for g, p in zip(grads, params)]
    total = torch.stack([s.sum() for s in sal]).sum().clamp_min(torch.finfo(torch.float32).tiny)
    return [s / total for s in sal]
