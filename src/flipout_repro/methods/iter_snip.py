"""Iterative SNIP (de Jorge et al. 2021, the baseline of the FORCE paper): progressive SNIP at init.

The same T iterations and keep fractions as FORCE (methods/force.py), but the network stays masked
(pruned weights are zero and receive no gradient) and the score is ``|(theta0 * m) * g|``: a pruned
weight scores 0 and, since ``prune_to`` only ever removes, it can never come back.
"""
from __future__ import annotations

from flipout_repro.methods.force import FORCE


class IterSNIP(FORCE):
    """Iterative SNIP: progressive pruning at initialisation; pruned weights stay pruned."""

    revive = False

    def __init__(self, name: str = "iter_snip", steps: int = 300, mode: str = "exp",
                 batches: int = 1, loss: str = "cross_entropy", init: str = "model",
                 cut: str = "exact") -> None:
        super().__init__(name, steps, mode, batches, loss, init, cut)
