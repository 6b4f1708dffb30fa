"""FlipOut (Apostol, Stol, Forre 2020): prune the weights that oscillate around zero.

Per step (steps 1-5: forward, backward, noise, optimizer step with masking, flip count): gradient noise
on every trainable parameter, then after the optimizer step and the masking, count for every prunable
weight whether its sign changed:
``c += (sign(P) != previous sign); c *= m`` with sign(0) = 0. Counters are float and never reset.
At a prune event the score is ``|w|^p / (c + 1)`` (p = 2 in the paper), ranked globally.

The previous signs are kept as sign tensors (values -1, 0, 1), not as a clone of the weights. On a GPU
the counting is five fused ``_foreach`` operations over all layers (sign, subtract, abs, clamp, add: few
kernel launches, and the caching allocator makes their temporaries free); on a CPU and a large network it is three in-place
operations a layer into preallocated buffers (``sign(out=)``, ``ne(out=)``, ``add_``), because there
every fresh weight-sized temporary costs page faults (VGG19: 97 ms a step against 17 ms). With
``compile=true`` it is one compiled pass a layer. All three give the same counts.
``c *= m`` is applied at every prune event: a pruned weight stays 0 with remembered sign 0, so its
counter cannot grow between events and the per-step multiplication would be a no-op.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks
from flipout_repro.methods.base import Method
from flipout_repro.methods.noise import add_gradient_noise, noise_plan


#: On a CPU, networks with more prunable weights than this count flips in place (measured crossover:
#: LeNet-300-100's 266k weights are faster with _foreach ops, VGG19's 20M with in-place ones).
INPLACE_MIN_WEIGHTS = 2_000_000


def count_flips(weights: list[torch.Tensor], signs: list[torch.Tensor], counters: list[torch.Tensor]) -> None:
    """c += (sign(w) != s); s = sign(w), in place: the form torch.compile fuses into one pass a layer."""
    for w, s, c in zip(weights, signs, counters):
        new = torch.sign(w)
        c.add_((new != s).to(c.dtype))
        s.copy_(new)


class FlipOut(Method):
    """FlipOut with gradient noise ``noise`` (lambda; 0 gives the ``flipout_no_noise`` ablation)."""

    def __init__(self, name: str = "flipout", p: float = 2.0, noise: float = 1.0) -> None:
        super().__init__(name)
        if p <= 0:
            raise ValueError(f"method.p={p} must be > 0 (the paper uses 2)")
        if noise < 0:
            raise ValueError(f"method.noise={noise} must be >= 0 (the paper uses 1; 0 turns it off)")
        self.p = float(p)
        self.noise = float(noise)
        self.counters: list[torch.Tensor] = []
        self.signs: list[torch.Tensor] = []
        self._flips_at_epoch_start = 0.0

    def bind(self, model: nn.Module, masks: Masks) -> None:
        """Zero counters and the initial signs of every prunable weight."""
        super().bind(model, masks)
        self.counters = [torch.zeros_like(p, dtype=torch.float32) for p in masks.params]
        self.signs = [torch.sign(p.detach()) for p in masks.params]
        self._weights = [p.detach() for p in masks.params]  # views of the parameters, built once
        self._compiled_count = None
        # CPU and a large network: spare sign buffers and flip flags, so that a step allocates nothing.
        # A small network (LeNet) is bound by per-operation overhead instead: fewer, fused calls win.
        self._on_cpu = (bool(masks.params) and masks.params[0].device.type == "cpu"
                        and masks.total() > INPLACE_MIN_WEIGHTS)
        self._spare = [torch.empty_like(s) for s in self.signs] if self._on_cpu else []
        self._flags = [torch.empty_like(s, dtype=torch.bool) for s in self.signs] if self._on_cpu else []
        self._trainable = [p for p in model.parameters() if p.requires_grad]
        self._noise_plan = noise_plan(self._trainable) if self.noise else None

    @property
    def modifies_grads(self) -> bool:
        """Only the noise touches gradients."""
        return self.noise > 0

    def after_backward(self, model: nn.Module) -> None:
        """Step 3: noise scaled by each gradient's RMS, on every trainable parameter."""
        if self.noise:
            add_gradient_noise(self._trainable, self.noise, self._noise_plan)

    def compile_hooks(self) -> None:
        """With ``compile=true`` the flip counting is compiled too: one fused pass per layer."""
        self._compiled_count = torch.compile(count_flips)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """Step 5: c += (sign(P) != remembered sign), i.e. min(|new - old|, 1); remember the new signs."""
        if self._compiled_count is not None:
            self._compiled_count(self._weights, self.signs, self.counters)
            return
        if self._on_cpu:
            for w, c, old, new, flag in zip(self._weights, self.counters, self.signs, self._spare, self._flags):
                torch.sign(w, out=new)
                torch.ne(new, old, out=flag)
                c.add_(flag)
            self.signs, self._spare = self._spare, self.signs
            return
        new = torch._foreach_sign(self._weights)
        changed = torch._foreach_sub(new, self.signs)
        torch._foreach_abs_(changed)
        torch._foreach_clamp_max_(changed, 1.0)
        torch._foreach_add_(self.counters, changed)
        self.signs = new

    @torch.no_grad()
    def scores(self, model: nn.Module) -> list[torch.Tensor]:
        """|w|^p / (c + 1)."""
        return [p.detach().abs().float().pow(self.p) / (c + 1) for p, c in zip(self.masks.params, self.counters)]

    @torch.no_grad()
    def after_prune(self) -> None:
        """Pruned weights' counters and signs drop to zero."""
        torch._foreach_mul_(self.counters, self.masks.values)
        torch._foreach_mul_(self.signs, self.masks.values)
        self._flips_at_epoch_start = float(self._total_flips())

    def _total_flips(self) -> torch.Tensor:
        return torch.stack([c.sum() for c in self.counters]).sum()

    @torch.no_grad()
    def epoch_stats(self) -> dict[str, float]:
        """Flip statistics over the surviving weights: total, this epoch, mean, max, share ever flipped."""
        total = float(self._total_flips())
        kept = sum(self.masks.nonzero_counts())
        flipped = sum(int(((c > 0) & m.bool()).sum()) for c, m in zip(self.counters, self.masks.values))
        stats = {
            "flips_total": total,
            "flips_epoch": total - self._flips_at_epoch_start,
            "flips_mean": total / max(kept, 1),
            "flips_max": float(max(c.max() for c in self.counters)),
            "flipped_fraction": flipped / max(kept, 1),
        }
        self._flips_at_epoch_start = total
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Counters and remembered signs."""
        return {"counters": [c.cpu() for c in self.counters], "signs": [s.cpu() for s in self.signs],
                "flips_at_epoch_start": self._flips_at_epoch_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters and signs."""
        for dst, src in zip(self.counters, state["counters"]):
            dst.copy_(src)
        for dst, src in zip(self.signs, state["signs"]):
            dst.copy_(src)
        self._flips_at_epoch_start = float(state["flips_at_epoch_start"])
