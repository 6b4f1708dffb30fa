"""Dense training: the unpruned baseline."""
from __future__ import annotations

from flipout_repro.methods.base import Method


class Dense(Method):
    """No pruning. The run's target sparsity is 0 whatever ``sparsity`` says (a note is logged)."""

    prunes = False

    def __init__(self, name: str = "dense") -> None:
        super().__init__(name)
