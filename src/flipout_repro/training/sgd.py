"""torch.optim.SGD that does not import torch's compiler (``torch._dynamo``) while nothing is compiled.

torch 2.x wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` in
``torch._disable_dynamo`` and ``SGD.step`` in ``_use_grad_for_differentiable``; both import
``torch._dynamo`` on their first call, only so that a compiled caller does not trace into them. That
import was about a second of every run's start (issue 18: "the first SGD construction").

Nothing can be compiling while ``torch._dynamo`` has not been imported (``torch.compile`` imports it),
so until then those wrappers would only call their plain function: :class:`SGD` calls it directly
(under the same grad mode ``_use_grad`` sets), and as soon as ``torch._dynamo`` is imported (e.g.
``compile=true``) it defers to torch's own wrappers again. The update is torch's own ``SGD.step``,
so its arithmetic is unchanged (tests/training/test_sgd.py compares the two bit for bit). Should a torch
version wrap these functions differently, the wrappers are left alone: slower to start, same result.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import torch

_DYNAMO = "torch._dynamo"
#: the code of the closure torch._disable_dynamo returns, to recognise the functions it wrapped
_DISABLE_CODE = getattr(torch._disable_dynamo(lambda: None), "__code__", None)


def _wrapper_chain(f: Callable) -> list[Callable]:
    chain = [f]
    while hasattr(chain[-1], "__wrapped__"):
        chain.append(chain[-1].__wrapped__)
    return chain


def _step_parts() -> tuple[Callable | None, Callable]:
    """(torch.optim.SGD.step's plain function or None, its wrapper that imports torch._dynamo), both
    below the profiling wrapper torch.optim.Optimizer puts around ``step`` (it wraps ours instead)."""
    chain = [f for f in _wrapper_chain(torch.optim.SGD.step) if not getattr(f, "hooked", False)]
    use_grad = next((f for f in chain if getattr(f, "__code__", None) is not None
                     and f.__code__.co_name == "_use_grad"), None)
    if use_grad is None or not hasattr(use_grad, "__wrapped__"):
        return None, chain[0]
    return use_grad.__wrapped__, use_grad


_PLAIN_STEP, _TORCH_STEP = _step_parts()


def _plain_until_dynamo(wrapped: Callable) -> None:
    """Let a function wrapped by ``torch._disable_dynamo`` call its plain function until torch._dynamo is
    imported, then torch's ``torch._dynamo.disable`` of it, as the wrapper does (it caches that in the
    plain function's ``__dynamo_disable`` attribute, which is what is set here)."""
    code = getattr(wrapped, "__code__", None)
    if code is None or code is not _DISABLE_CODE or not wrapped.__closure__:
        return
    cells = dict(zip(code.co_freevars, (c.cell_contents for c in wrapped.__closure__)))
    fn, recursive = cells.get("fn"), cells.get("recursive", True)
    if fn is None or getattr(fn, "__dynamo_disable", None) is not None:
        return

    def plain_or_disabled(*args: Any, **kwargs: Any) -> Any:
        dynamo = sys.modules.get(_DYNAMO)
        if dynamo is None or not hasattr(dynamo, "disable"):
            return fn(*args, **kwargs)
        disabled = dynamo.disable(fn, recursive, wrapping=False)
        setattr(fn, "__dynamo_disable", disabled)  # from now on torch's wrapper calls it directly
        return disabled(*args, **kwargs)

    setattr(fn, "__dynamo_disable", plain_or_disabled)


for _name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
    _plain_until_dynamo(getattr(torch.optim.Optimizer, _name, None))


class SGD(torch.optim.SGD):
    """torch.optim.SGD (same arguments, state and update) whose ``step`` imports no compiler machinery
    while nothing is compiled."""

    def step(self, closure: Callable[[], float] | None = None) -> Any:  # noqa: D102 (torch's docstring)
        if _PLAIN_STEP is None or _DYNAMO in sys.modules:
            return _TORCH_STEP(self, closure)
        prev = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])  # what _use_grad sets around the step
            return _PLAIN_STEP(self, closure)
        finally:
            torch.set_grad_enabled(prev)
