"""A layer collapse at a prune event: a layer left with no weight passes no signal, and the network then
predicts one class whatever the input ("layer-collapse", Tanaka et al. 2020, SynFlow). It is warned at the event that caused it, and with
``on_collapse=stop`` the run ends there instead of training on for the remaining epochs.
"""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("flipout_repro")



class LayerCollapsed(RuntimeError):
    """A prune event left a layer with no weight and ``on_collapse=stop`` asked to end the run there."""

    def __init__(self, message: str, layers: list[str], epoch: int, step: int) -> None:
        super().__init__(message)
        self.layers, self.epoch, self.step = layers, epoch, step


def collapse_watch(on_collapse: str, quiet: bool = False) -> Callable[[dict], None]:
    """A check for each prune record (trainer's ``on_prune``): a warning the first time a layer's kept
    count (``rec["kept"]``) is 0, and :class:`LayerCollapsed` when ``on_collapse`` is ``stop``. ``quiet``
    (data-parallel ranks > 0): no warning, rank 0 gives it; the stop is the same on every rank."""
    warned: set[str] = set()

    def check(rec: dict) -> None:
        new = [name for name, kept in rec.get("kept", {}).items() if kept == 0 and name not in warned]
        if not new:
            return
        warned.update(new)
        where = f"the prune event at epoch {rec['epoch']} (step {rec['step']})"
        text = (f"{where} collapsed {len(new)} layer{'s' if len(new) > 1 else ''}: {', '.join(new)} "
                f"(all weights pruned, no signal crosses {'them' if len(new) > 1 else 'it'})")
        if on_collapse == "stop":
            raise LayerCollapsed(f"{text}; on_collapse=stop ended the run there: lower the sparsity, or"
                                 " pick a method that prunes every layer to the same fraction (method=layer_magnitude)",
                                 new, int(rec["epoch"]), int(rec["step"]))
        if not quiet:
            log.warning("%s; training goes on (on_collapse=stop ends a run here)", text)

    return check
