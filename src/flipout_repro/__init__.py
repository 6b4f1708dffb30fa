"""flipout-repro: reproduce FlipOut and the pruning methods it is measured against."""

__version__ = "0.1.0"
