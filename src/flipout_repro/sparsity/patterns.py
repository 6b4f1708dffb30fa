"""Sparsity patterns (``pattern=``): ``unstructured`` (any weight may go) or ``nm`` (N:M).

N:M (NVIDIA's 2:4 of the Ampere sparse tensor cores; Mishra et al. 2021, "Accelerating Sparse Deep Neural
Networks", section 2): in every group of ``m`` consecutive weights along the input dimension at most ``n``
are non-zero. A Linear weight (out, in) is grouped along each row. A Conv2d weight (out, in, kh, kw) is
grouped along its input channels, as NVIDIA's ASP (apex/contrib/sparsity/sparse_masklib.py, ``create_mask``)
and SR-STE (aojunzz/NM-sparsity) do: viewed as (out, kh, kw, in), the channels-last layout whose GEMM rows
the sparse tensor cores read, each group holds ``m`` consecutive input channels at one kernel position
(:func:`gemm_rows`). A layer whose grouped dimension ``m`` does not divide is refused before the run starts
(:func:`check_layers`), with the fix (keep it dense with ``budget.dense_first``/``dense_last``, or another
``m``); ASP instead skips, silently, every layer its kernels cannot take (docs/fidelity.md, N:M).

A prune event at sparsity ``s`` zeroes the ``round(s * m)`` lowest-scored weights of every group
(:func:`group_zeros`: nearest integer, halves up, at most ``m - n``), so a schedule moves from dense to
N:M in steps of 1/m: one event at ``(m - n)/m``, or gradually (2:4 under a cubic schedule: 0, 1, then 2
zeros per group as ``s`` passes 0.125 and 0.375). An nm run's target is ``(m - n)/m``.
This module is a leaf: it imports only flipout_repro.errors of the package (masking imports it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from flipout_repro.errors import ConfigError

PATTERNS = ("unstructured", "nm")
#: torch's CUTLASS semi-structured kernels (torch/sparse/semi_structured.py, SparseSemiStructuredTensorCUTLASS
#: ._DTYPE_SHAPE_CONSTRAINTS): the sparse operand's rows and columns must be multiples of these; cuSPARSELt
#: asks for 16 x 16, so a weight that fits CUTLASS fits both backends.
SEMI_STRUCTURED_MULTIPLE = {torch.float16: (32, 64), torch.bfloat16: (32, 64)}


@dataclass(frozen=True)
class Pattern:
    """``kind`` in :data:`PATTERNS`; ``n`` and ``m`` for ``nm``."""

    kind: str = "unstructured"
    n: int | None = None
    m: int | None = None

    def __post_init__(self) -> None:
        check(self.kind, self.n, self.m)

    @property
    def nm(self) -> bool:
        """True for an N:M pattern."""
        return self.kind == "nm"


def check(kind: str, n: object, m: object) -> None:
    """ConfigError unless ``kind``/``n``/``m`` make a pattern (n and m only for nm, 1 <= n < m)."""
    if kind not in PATTERNS:
        raise ConfigError("pattern", kind, f"is not a pattern (one of {', '.join(PATTERNS)})", "e.g. pattern=nm")
    if kind == "unstructured":
        for key, value in (("pattern.n", n), ("pattern.m", m)):
            if value is not None:
                raise ConfigError(key, value, "applies to pattern=nm only", f"add pattern=nm, or drop {key}")
        return
    for key, value in (("pattern.m", m), ("pattern.n", n)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, "must be an integer", "e.g. pattern.n=2 pattern.m=4 (2:4)")
    if m < 2:
        raise ConfigError("pattern.m", m, "must be >= 2 (the group size)", "e.g. pattern.m=4 (2:4)")
    if not 1 <= n < m:
        raise ConfigError("pattern.n", n, f"must be in [1, {m - 1}] (kept weights per group of m={m})",
                          f"e.g. pattern.n={m // 2}")


def check_config(kind: str, n: object, m: object, budget: str, sparsity: object) -> None:
    """:func:`check`, then for nm: a budget that fits it and the run's ``sparsity`` equal to (m - n)/m."""
    check(kind, n, m)
    if kind != "nm":
        return
    want = nm_sparsity(n, m)
    if budget not in ("global", "uniform"):  # every group, so every layer, at the same sparsity either way
        raise ConfigError("budget", budget, f"cannot apply to pattern=nm, which prunes {want:g} of every group",
                          "use budget=global or budget=uniform (budget.dense_first/dense_last still apply)")
    if isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool) and abs(sparsity - want) > 1e-12:
        raise ConfigError("sparsity", sparsity, f"does not match pattern=nm with {n}:{m}, which prunes"
                          f" (m - n)/m = {want:g}", f"drop sparsity= (pattern=nm sets it) or give sparsity={want:g}")


def nm_sparsity(n: object, m: object) -> float:
    """(m - n) / m, the sparsity of an N:M pattern (0 for values :func:`check` refuses, which it reports)."""
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, m)) and 1 <= n < m
    return (m - n) / m if ok else 0.0


def group_zeros(sparsity: float, n: int, m: int) -> int:
    """Zeros per group of ``m`` at ``sparsity``: the nearest integer to ``sparsity * m``, at most ``m - n``."""
    return min(m - n, int(math.floor(sparsity * m + 0.5)))


def gemm_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as the 2-D matrix whose rows are grouped: (out, in) for a Linear weight, (out, kh * kw * in) for a
    Conv2d weight (permuted to (out, kh, kw, in): input channels consecutive)."""
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
    return t.reshape(t.shape[0], -1)


def from_gemm_rows(rows: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The inverse of :func:`gemm_rows`: ``rows`` back to a weight of ``shape``."""
    if len(shape) == 4:
        out, cin, kh, kw = shape
        return rows.reshape(out, kh, kw, cin).permute(0, 3, 1, 2)
    return rows.reshape(tuple(shape))


def groups(t: torch.Tensor, m: int) -> torch.Tensor:
    """``t`` as (out, groups, m): ``m`` consecutive entries of each of its :func:`gemm_rows`."""
    return gemm_rows(t).reshape(t.shape[0], -1, m)


def input_dim(shape: Sequence[int]) -> int:
    """Entries per output row: in (Linear) or in x kh x kw (Conv2d)."""
    return math.prod(shape[1:])


def grouped_dim(shape: Sequence[int]) -> int:
    """The dimension the groups run along, which ``m`` must divide: in (Linear and Conv2d alike)."""
    return shape[1]


def check_layers(names: Sequence[str], shapes: Sequence[Sequence[int]], m: int, dense: set[int]) -> None:
    """ConfigError naming the first layer (not kept dense) whose input channels ``m`` does not divide."""
    for i, (name, shape) in enumerate(zip(names, shapes)):
        if i not in dense and grouped_dim(shape) % m:
            fix = ("budget.dense_first=true keeps it dense" if i == 0 else
                   "budget.dense_last=true keeps it dense" if i == len(shapes) - 1 else
                   f"pick a pattern.m that divides {grouped_dim(shape)}")
            what = " (its input channels, along which a conv's groups run)" if len(shape) == 4 else ""
            raise ConfigError("pattern.m", m, f"does not divide the input dimension {grouped_dim(shape)} of"
                              f" {name} {tuple(shape)}{what}", fix)


def zero_lowest_per_group(ranked: torch.Tensor, k: int, m: int) -> torch.Tensor:
    """The keep-mask (bool, shape of ``ranked``) with the ``k`` lowest entries of every group of ``m`` gone;
    entries already at -inf (pruned) count among them. Ties break by position within the group."""
    g = groups(ranked, m).clone()
    if k > 0:
        idx = torch.topk(g, k, dim=-1, largest=False, sorted=False).indices
        g.scatter_(-1, idx, float("-inf"))
    return from_gemm_rows(g != float("-inf"), ranked.shape)


def is_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of ``m`` consecutive entries along the input dimension (input channels for a
    Conv2d weight) holds at most ``n`` non-zeros (False when ``m`` does not divide it)."""
    if mask.dim() < 2 or grouped_dim(mask.shape) % m:
        return False
    return bool((groups(mask != 0, m).sum(-1) <= n).all())


def semi_structured_problem(weight: torch.Tensor, dtype: torch.dtype = torch.float16) -> str | None:
    """Why ``weight`` (as its 2-D :func:`gemm_rows`) cannot go to ``torch.sparse.to_sparse_semi_structured`` as ``dtype``,
    once zero-padded to the kernels' multiples (:func:`semi_structured_padding`); None when it can.

    The checks are those of torch's ``_validate_device_dim_dtype_shape`` less the device (a CPU can check a
    layout but not build the tensor): 2:4 along rows, a dtype with 2:4 kernels, 2-D.
    """
    if dtype not in SEMI_STRUCTURED_MULTIPLE:
        return f"dtype {dtype} has no 2:4 kernel here (float16 or bfloat16)"
    w2 = gemm_rows(weight.detach())
    if w2.shape[1] % 4:
        return f"its {w2.shape[1]} input columns are not a multiple of 4 (2:4 groups)"
    if not is_nm(w2, 2, 4):
        return "it is not 2:4 (a group of 4 consecutive weights of a row holds more than 2 non-zeros)"
    return None


def semi_structured_padding(shape: Sequence[int], dtype: torch.dtype = torch.float16) -> tuple[int, int]:
    """The 2-D shape a weight of ``shape`` is zero-padded to for the semi-structured kernels (zero rows and
    columns keep 2:4)."""
    rows, cols = shape[0], input_dim(shape)
    r, c = SEMI_STRUCTURED_MULTIPLE[dtype]
    return (-(-rows // r) * r, -(-cols // c) * c)
