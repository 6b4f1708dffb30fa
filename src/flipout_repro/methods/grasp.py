"""GraSP (Wang, Zhang, Grosse 2020, "Picking Winning Tickets Before Training by Preserving Gradient
Flow"): prune once at initialisation, keeping the gradient flow.

The score of a weight is ``S = -theta * Hg`` (section 4, eq. 8), with ``g`` the gradient of the loss and
``H`` its Hessian, both at initialisation; GraSP removes the weights of highest ``S`` (those whose removal
reduces the gradient norm least, or raises it). Here higher = keep, so a weight's score is ``-S``,
normalised as its reference code does (alecwangcq/GraSP pruner/GraSP.py): divided by ``|sum S| + 1e-10``.

As the reference code (pruner/GraSP.py:11-31, 49-155), on a deep copy of the model in training mode:

- data: ``samples_per_class`` training images of every class, in the order the batches bring them,
  stacked class by class and split in two halves (the first half holds the lower classes);
  ``iterations`` such draws, each continuing the epoch's batches;
- ``g``: the sum over the halves of the gradient of ``cross_entropy(logits / temperature)``;
- ``Hg``: the sum over the halves of the gradient of ``sum(g.detach() * grad(loss_half))`` (a
  Hessian-vector product by double backward), the loss again on ``logits / temperature``.

The reference re-draws the Linear weights of its scoring copy with ``xavier_normal_`` (its ``reinit=True``
default) and applies the mask to the original weights: ``reinit_linear=true``. Differences from the
reference and their effect: docs/fidelity.md (GraSP).
"""
from __future__ import annotations

import copy
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.masking import Masks, prunable_weights
from flipout_repro.methods.saliency import Batch, ScoredAtInit, _mean_over_ranks

#: the reference's ``eps`` of the normalisation (pruner/GraSP.py:50)
EPS = 1e-10


class GraSP(ScoredAtInit):
    """Gradient signal preservation at initialisation: ``theta * Hg``, ranked by the run's budget."""

    def __init__(self, name: str = "grasp", samples_per_class: int = 10, temperature: float = 200.0,
                 iterations: int = 1, reinit_linear: bool = False) -> None:
        super().__init__(name)
        for key, value, fix in (("samples_per_class", samples_per_class, "10 as the reference's CIFAR-10 VGG19"),
                                ("iterations", iterations, "1 as the reference")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"method.{key}={value!r} must be an integer >= 1: e.g. {fix}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"method.temperature={temperature!r} must be a number > 0: e.g. 200 (the reference's)")
        self.samples_per_class, self.iterations = samples_per_class, iterations
        self.temperature = float(temperature)
        self.reinit_linear = bool(reinit_linear)
        self._scores: list[torch.Tensor] | None = None

    def bind(self, model: nn.Module, masks: Masks) -> None:
        """Refuse a model with no weight to score."""
        if not masks.params:
            raise ConfigError("method", self.name, f"has no Conv2d or Linear weight of {type(model).__name__}"
                              " to score", "pick a model with Conv2d or Linear layers")
        super().bind(model, masks)

    def check_data(self, labels: torch.Tensor, num_classes: int) -> None:
        """ConfigError unless every one of the ``num_classes`` classes has ``iterations * samples_per_class``
        training images (``labels``: the training labels)."""
        need = self.iterations * self.samples_per_class
        counts = torch.bincount(labels.reshape(-1).long().cpu(), minlength=num_classes)[:num_classes]
        fewest, cls = int(counts.min()), int(counts.argmin())
        if fewest < need:
            per = fewest // self.iterations
            fix = (f"use method.samples_per_class={per}" if per >= 1 else
                   "use a data set with every class in its training split")
            raise ConfigError("method.samples_per_class", self.samples_per_class,
                              f"needs {need} training images of each of the {num_classes} classes"
                              f" ({self.iterations} iteration(s)), but class {cls} has {fewest}", fix)

    def on_train_start(self, batches: Iterator[Batch], target: float, epochs: int, steps_per_epoch: int) -> None:
        """Draw the per-class samples and compute the scores once, on a copy of the initial model."""
        it = _Peek(iter(batches))
        classes = _num_classes(self.model, it)
        draws = [per_class_samples(it, classes, self.samples_per_class) for _ in range(self.iterations)]
        halves = [half for x, y in draws for half in split_halves(x, y)]
        self._scores = grasp_scores(self.model, halves, self.temperature, self.reinit_linear)


def _num_classes(model: nn.Module, it: "_Peek") -> int:
    """The width of the model's output (its number of classes), from the next batch, which stays next."""
    first = next(it)
    it.push(first)
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        return int(net(first[0][:1]).shape[1])


class _Peek:
    """An iterator with one batch pushed back."""

    def __init__(self, it: Iterator[Batch]) -> None:
        self._it, self._back = it, []  # type: ignore[var-annotated]

    def push(self, batch: Batch) -> None:
        self._back.append(batch)

    def __iter__(self) -> "_Peek":
        return self

    def __next__(self) -> Batch:
        return self._back.pop() if self._back else next(self._it)


def per_class_samples(batches: Iterator[Batch], classes: int, per_class: int) -> Batch:
    """The first ``per_class`` samples of each class in the order ``batches`` brings them, stacked class by
    class (class 0's, then class 1's, ...), as the reference's GraSP_fetch_data (pruner/GraSP.py:11-31)."""
    xs: list[list[torch.Tensor]] = [[] for _ in range(classes)]
    have = [0] * classes
    while min(have) < per_class:
        try:
            x, y = next(batches)
        except StopIteration:
            raise RuntimeError(f"the training batches ran out before {per_class} samples of each of {classes}"
                               " classes were drawn") from None
        for c in range(classes):
            if have[c] < per_class:
                idx = (y == c).nonzero().flatten()[: per_class - have[c]]
                if idx.numel():
                    xs[c].append(x[idx])
                    have[c] += idx.numel()
    x = torch.cat([torch.cat(parts) for parts in xs])
    y = torch.arange(classes, device=x.device).repeat_interleave(per_class)
    return x, y


def split_halves(x: torch.Tensor, y: torch.Tensor) -> list[Batch]:
    """``(x, y)`` as the reference's two halves ``[:N//2]`` and ``[N//2:]``."""
    n = x.shape[0] // 2
    return [(x[:n], y[:n]), (x[n:], y[n:])]


def grasp_scores(model: nn.Module, batches: list[Batch], temperature: float = 200.0,
                 reinit_linear: bool = False) -> list[torch.Tensor]:
    """``theta * Hg / (|sum(-theta * Hg)| + eps)`` for every prunable weight (higher = keep), on a copy of
    ``model`` in training mode; ``g`` and ``Hg`` summed over ``batches`` as the module docstring says.
    With ``reinit_linear`` the copy's Linear weights are first re-drawn with ``xavier_normal_``."""
    net = copy.deepcopy(model).train()
    named = prunable_weights(net)
    params = [p for _, p in named]
    if reinit_linear:
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_normal_(m.weight)
    for p in params:
        p.requires_grad_(True)

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(x) / temperature, y)

    g = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        torch._foreach_add_(g, [t.detach() for t in torch.autograd.grad(loss(x, y), params)])
    _mean_over_ranks(g)
    hg = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        grads = torch.autograd.grad(loss(x, y), params, create_graph=True)
        z = torch.stack([(gw * gf).sum() for gw, gf in zip(g, grads)]).sum()
        torch._foreach_add_(hg, [t.detach() for t in torch.autograd.grad(z, params)])
    _mean_over_ranks(hg)
    keep = [p.detach() * h for p, h in zip(params, hg)]  # = -S
    norm = torch.stack([k.sum() for k in keep]).sum().abs() + EPS
    return [k / norm for k in keep]
