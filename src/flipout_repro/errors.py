"""ConfigError: the one error of a bad config value, raised by every layer (the bottom of the import
layers: it imports nothing, so the sparsity package, config, training and the entry points share it).
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad config value; ``str(err)`` is the whole message for the user: ``key=value problem: fix``
    (``sparsity=99.6 must be in [0, 1): did you mean 0.996?``)."""

    def __init__(self, key: str, value: object, problem: str, fix: str = "") -> None:
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key}={value!r} {problem}" + (f": {fix}" if fix else ""))
