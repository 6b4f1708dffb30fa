"""Prunable weights, their masks, and the one function that turns scores into masks.

Prunable weights are the ``weight`` of every ``nn.Conv2d`` and ``nn.Linear`` (biases and
BatchNorm are never pruned). Sparsity is the number of zeros in the masks over the number of prunable
weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from flipout_repro.sparsity.budgets import Budget, event_zeros, layer_zeros
from flipout_repro.sparsity.patterns import Pattern, group_zeros, zero_lowest_per_group

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(qualified name, weight) of every Conv2d and Linear in ``model``, in module order."""
    return [
        (f"{name}.weight" if name else "weight", module.weight)
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
    ]


def count_prunable(model: nn.Module) -> int:
    """Number of prunable weights of ``model``."""
    return sum(p.numel() for _, p in prunable_weights(model))


@dataclass
class Masks:
    """Masks aligned with the prunable weights of one model.

    ``values`` hold 1.0 (kept) or 0.0 (pruned) in the weights' dtype, so that masking is one fused
    ``torch._foreach_mul_`` over all weights. ``active`` stays False until the first prune, so a dense
    phase costs nothing.
    """

    names: list[str]
    params: list[nn.Parameter]
    values: list[torch.Tensor]
    active: bool = False

    @classmethod
    def for_model(cls, model: nn.Module) -> "Masks":
        """All-ones masks for every prunable weight of ``model``."""
        named = prunable_weights(model)
        if not named:
            raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to prune")
        return cls(
            names=[n for n, _ in named],
            params=[p for _, p in named],
            values=[torch.ones_like(p, memory_format=torch.preserve_format).detach() for _, p in named],
        )

    # --- applying -----------------------------------------------------------------------------
    @torch.no_grad()
    def apply_to_weights(self) -> None:
        """P *= m for every prunable weight (keeps pruned weights exactly zero)."""
        if self.active:
            torch._foreach_mul_([p.data for p in self.params], self.values)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        """grad[P] *= m for every prunable weight that has a gradient."""
        if not self.active:
            return
        pairs = [(p.grad, m) for p, m in zip(self.params, self.values) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    # --- statistics ---------------------------------------------------------------------------
    def total(self) -> int:
        """Number of prunable weights."""
        return sum(m.numel() for m in self.values)

    def nonzero_counts(self) -> list[int]:
        """Kept weights per layer (one host sync, for reporting only). Remembered until a mask changes:
        every change to a mask is an in-place operation on it, which bumps its version counter, so a
        run's epochs between two prune events count once."""
        seen, versions, counts = getattr(self, "_counted", ((), (), []))
        now = tuple(m._version for m in self.values)
        if len(seen) != len(self.values) or any(a is not b for a, b in zip(seen, self.values)) or versions != now:
            counts = [int(c) for c in torch.stack([m.count_nonzero() for m in self.values]).tolist()]
            self._counted = (tuple(self.values), now, counts)  # the tensors held: their ids stay theirs
        return list(counts)

    def sparsity(self) -> float:
        """Fraction of prunable weights that are pruned."""
        return 1.0 - sum(self.nonzero_counts()) / self.total()

    def layer_sparsity(self) -> dict[str, float]:
        """Sparsity of each prunable layer, by weight name."""
        return {
            n: 1.0 - c / m.numel() for n, c, m in zip(self.names, self.nonzero_counts(), self.values)
        }

    def state_dict(self) -> dict:
        """Masks as bool tensors (compact and safe to load with weights_only=True)."""
        return {"names": list(self.names), "masks": [m.bool().cpu() for m in self.values],
                "active": self.active}

    def load_state_dict(self, state: dict) -> None:
        """Restore masks saved by :meth:`state_dict` (names must match)."""
        if list(state["names"]) != self.names:
            raise ValueError("saved masks belong to a different model (layer names differ)")
        for dst, src in zip(self.values, state["masks"]):
            dst.copy_(src.to(dst.device, dst.dtype))
        self.active = bool(state["active"])


@torch.no_grad()
def prune_to(scores: list[torch.Tensor], masks: Masks, sparsity: float, scope: str | Budget = "global",
             count: str = "exact", fraction: float | None = None, pattern: Pattern | None = None) -> int:
    """Set ``masks`` so that exactly ``sparsity`` of the weights are pruned, removing the lowest scores.

    ``count`` and ``fraction`` round the number of zeros as the reference codes do (:func:`event_zeros`,
    ``schedule.rounding=reference``), per unit of ``scope``: all layers together, or each layer.
    ``scope`` is ``"global"``, ``"layer"`` or a :class:`budgets.Budget`; a budget with a dense layer or
    ``erk`` counts the zeros over all layers and shares them out exactly (budgets.layer_zeros).
    ``pattern`` N:M zeroes the same number of weights in every group instead (patterns.group_zeros:
    ``round(sparsity * m)``, at most m - n; the layers a budget keeps dense stay dense; ``count`` unused).

    Higher score = keep. Already-pruned weights rank below every surviving one, so pruning only ever
    removes (a mask entry never goes from 0 back to 1) and the count is hit exactly: the
    ``budgets.target_zeros(n, sparsity)`` lowest-ranked weights are zero afterwards, over all layers
    (``scope="global"``) or in each layer on its own (``scope="layer"``). Ties break by position.
    If the masks already hold more zeros than requested, nothing changes.
    Returns the number of weights newly pruned.
    """
    budget = scope if isinstance(scope, Budget) else None
    if budget is None and scope not in ("global", "layer"):
        raise ValueError(f"scope={scope!r} must be 'global' or 'layer'")
    if budget is None:
        budget = Budget("global" if scope == "global" else "uniform")
    if len(scores) != len(masks.values):
        raise ValueError(f"got {len(scores)} score tensors for {len(masks.values)} prunable layers")
    before = sum(masks.nonzero_counts())
    ranked = [
        torch.where(m.bool(), s.detach().float(), torch.tensor(float("-inf"), device=s.device))
        for s, m in zip(scores, masks.values)
    ]
    def zeros(n: int, mask_values: list[torch.Tensor]) -> int:
        kept = n if count != "remove_floor" else sum(int(m.count_nonzero()) for m in mask_values)
        return event_zeros(n, kept, sparsity, count, fraction)

    dense = budget.dense(len(ranked))
    if pattern is not None and pattern.nm:
        k = group_zeros(sparsity, pattern.n, pattern.m)
        for i, (r, m) in enumerate(zip(ranked, masks.values)):
            if i not in dense:
                m.copy_(zero_lowest_per_group(r, k, pattern.m))
    elif budget.kind == "global":
        pool = [i for i in range(len(ranked)) if i not in dense]
        flat = torch.cat([ranked[i].flatten() for i in pool])
        k = zeros(masks.total(), masks.values)
        if k > flat.numel():  # budgets.check refuses such a run before it starts
            raise ValueError(f"{k} zeros do not fit in the {flat.numel()} weights outside the dense layers")
        _zero_lowest(flat, k)
        offset = 0
        for i in pool:
            m = masks.values[i]
            n = m.numel()
            m.copy_(flat[offset:offset + n].view_as(m) != float("-inf"))
            offset += n
    else:
        if budget.plain():
            per_layer = [zeros(m.numel(), [m]) for m in masks.values]
        else:
            already = [m.numel() - c for m, c in zip(masks.values, masks.nonzero_counts())]
            per_layer = layer_zeros([m.shape for m in masks.values], already, zeros(masks.total(), masks.values),
                                    budget)
        for r, m, k in zip(ranked, masks.values, per_layer):
            flat = r.flatten()
            _zero_lowest(flat, k)
            m.copy_(flat.view_as(m) != float("-inf"))
    masks.active = True
    masks.apply_to_weights()
    return before - sum(masks.nonzero_counts())


@torch.no_grad()
def set_masks(masks: Masks, values: list[torch.Tensor]) -> None:
    """Set ``masks`` to given 0/1 tensors (a derived run's start mask: training/derive.py) and zero the
    pruned weights; a tensor of another shape or with other values than 0 and 1 is refused."""
    if len(values) != len(masks.values):
        raise ValueError(f"got {len(values)} masks for {len(masks.values)} prunable layers")
    for name, dst, src in zip(masks.names, masks.values, values):
        if tuple(src.shape) != tuple(dst.shape) or bool(((src != 0) & (src != 1)).any()):
            raise ValueError(f"the mask for {name} is not a 0/1 tensor of shape {tuple(dst.shape)}")
        dst.copy_(src.to(dst.device, dst.dtype))
    masks.active = True
    masks.apply_to_weights()


def _zero_lowest(flat: torch.Tensor, k: int) -> None:
    """Mark the ``k`` lowest entries of ``flat`` as pruned (-inf), in place; already -inf ones first."""
    already = int((flat == float("-inf")).sum())
    if k <= already:
        return
    # The already-pruned entries are -inf, so they are among the k smallest; topk breaks ties stably
    # enough for an exact count (indices, not a threshold, so equal scores cannot overshoot).
    idx = torch.topk(flat, k, largest=False, sorted=False).indices
    flat[idx] = float("-inf")


# --- dynamic sparse training: masks that can grow ----------------------------------------------


@dataclass
class Regrowth:
    """What :func:`drop_and_grow` did, per layer: weights dropped, weights grown, and ``new``, a bool
    tensor per layer of the entries that became active (grown and not active before: a weight dropped
    and grown back in the same update is in neither ``new`` nor the net change)."""

    dropped: list[int]
    grown: list[int]
    new: list[torch.Tensor]


@torch.no_grad()
def drop_and_grow(drop_scores: list[torch.Tensor], grow_scores: list[torch.Tensor], masks: Masks,
                  counts: list[int], regrow_dropped: bool = True) -> Regrowth:
    """Per layer, deactivate the ``counts[l]`` active weights with the lowest drop score and activate as
    many weights with the highest grow score: the regrow counterpart of :func:`prune_to`, the other place
    that changes masks (dynamic sparse training: SET, RigL).

    Grow candidates are the weights not kept after the drop. With ``regrow_dropped`` (RigL's reference,
    rigl/sparse_optimizers_base.py:305-311: only the kept weights are lifted out of the grow ranking)
    the weights just dropped are candidates too; one grown back keeps its value (and, for the caller,
    its optimizer state: :330-333). Without it only weights inactive before the update can grow, and a
    layer with fewer of them than ``counts[l]`` drops and grows only that many. Either way each
    layer's count of active weights is unchanged. Ties break by position (the lower flat index drops
    first and grows first). Newly active weights are set to 0 and the masks applied to the weights.
    """
    if not (len(drop_scores) == len(grow_scores) == len(counts) == len(masks.values)):
        raise ValueError(f"got {len(drop_scores)} drop, {len(grow_scores)} grow score tensors and"
                         f" {len(counts)} counts for {len(masks.values)} prunable layers")
    dropped, grown, new = [], [], []
    for ds, gs, k, m, p in zip(drop_scores, grow_scores, counts, masks.values, masks.params):
        if int(k) < 0:
            raise ValueError(f"drop and grow counts must be >= 0, got {k}")
        active = m.flatten().bool()
        n_active = int(active.sum())
        k = min(int(k), n_active if regrow_dropped else min(n_active, active.numel() - n_active))
        keep = active.clone()
        if k:
            # lowest drop scores among the active weights; inactive ones rank last (+inf); stable: by position
            d = torch.where(active, ds.detach().flatten().float(), torch.tensor(float("inf"), device=ds.device))
            keep[_first_k(d, k)] = False
        candidates = ~keep if regrow_dropped else ~active
        after = keep.clone()
        if k:
            g = torch.where(candidates, -gs.detach().flatten().float(), torch.tensor(float("inf"), device=gs.device))
            after[_first_k(g, k)] = True
        born = after & ~active
        m.copy_(after.view_as(m))
        p.data[born.view_as(m)] = 0  # newly grown weights start at 0 (RigL's grow_init=zeros)
        dropped.append(k)
        grown.append(k)
        new.append(born.view_as(m))
    masks.active = True
    masks.apply_to_weights()
    return Regrowth(dropped, grown, new)


def _first_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` smallest entries of the 1-d ``values``; ties by position (stable sort)."""
    return torch.sort(values, stable=True).indices[:k]


def reached(target: float, achieved: float) -> bool:
    """Whether a run at ``achieved`` sparsity is at its ``target``: the weights it keeps exceed the
    target's share by at most 2 % of it (per-layer rounding and ERK's stay well inside)."""
    return (1.0 - achieved) <= (1.0 - target) * 1.02 + 1e-6
