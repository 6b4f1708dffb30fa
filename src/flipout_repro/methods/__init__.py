"""Pruning methods: each one a score plus the training-time hooks it needs (see base.Method)."""
