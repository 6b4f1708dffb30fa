"""Pruning methods: each one a score plus the training-time hooks it needs (see base.Method)."""

from flipout_repro.methods.base import Method

__all__ = ["Method"]
