"""Lookahead as airbench does it (``optim.lookahead_every``; KellerJordan/cifar10-airbench f1c599c,
legacy/airbench94.py:263-271, :392, :428-436): a slow copy of every floating-point tensor of the model's
state (weights and BatchNorm statistics alike). Every ``every`` steps the slow copy moves towards the live
weights, ``slow = d slow + (1 - d) live`` with ``d = 0.95^every (step / steps)^3``, and the live weights
become the slow copy; after the last step the live weights become the slow copy once more.

The slow copy of a prunable weight is masked before the live weight takes it, so a pruned weight stays 0
and a weight that grows back starts from 0, whatever the slow copy held (masks change only through
sparsity/masking.py; this only multiplies by them).
"""
from __future__ import annotations

import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks


class Lookahead:
    """The slow copy of ``model``'s state and its update; ``state_dict``/``load_state_dict`` for checkpoints."""

    def __init__(self, model: nn.Module, masks: Masks, every: int, steps: int) -> None:
        self.model, self.masks, self.every, self.steps = model, masks, int(every), int(steps)
        self.live = {k: v for k, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()}
        self.slow = {k: v.detach().clone() for k, v in self.live.items()}
        by_id = {id(p): m for p, m in zip(masks.params, masks.values)}
        self.mask_of = {k: by_id[id(v)] for k, v in self.live.items() if id(v) in by_id}

    @torch.no_grad()
    def reset(self) -> None:
        """The slow copy becomes the live state (a run's start, wherever its weights came from)."""
        for k, live in self.live.items():
            self.slow[k].copy_(live.detach())

    def decay(self, step: int) -> float:
        """The slow copy's weight at step ``step`` (counted from 1, after that step's update), computed in
        float32 as the source's table (legacy/airbench94.py:392), so the two agree to the bit."""
        t = torch.tensor(step, dtype=torch.float32) / self.steps
        return float(0.95 ** self.every * t ** 3)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """After optimizer step ``step`` (from 1): the update every ``every`` steps, the last copy at the end."""
        if step % self.every == 0:
            self.update(self.decay(step))
        elif step == self.steps:
            self.update(1.0)

    @torch.no_grad()
    def update(self, decay: float) -> None:
        """slow = decay slow + (1 - decay) live, masked; live = slow."""
        for k, live in self.live.items():
            slow = self.slow[k]
            slow.lerp_(live.detach(), 1.0 - decay)
            if k in self.mask_of:
                slow.mul_(self.mask_of[k])
            live.data.copy_(slow)

    def state_dict(self) -> dict:
        """The slow copy."""
        return {"slow": {k: v.clone() for k, v in self.slow.items()}}

    def load_state_dict(self, state: dict) -> None:
        """The slow copy of a checkpoint."""
        for k, v in state["slow"].items():
            self.slow[k].copy_(v)
