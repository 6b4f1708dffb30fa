"""A truly sparse export of a pruned network: only the kept weights are stored, so the file is about as
small as analysis/size.py's ``sparse_fp32_bytes`` says (plus torch.save's per-tensor overhead).

``pruned_sparse.pt`` (load with ``torch.load(path, weights_only=True)``) is a dict::

    {"format": "flipout-sparse/1",
     "dense":  {name: tensor},          # every tensor that is not a pruned weight, as in state_dict()
     "sparse": {name: {"shape": int64 tensor, "encoding": "bitmap" | "csr", "values": fp32 kept values,
                       "bitmap": uint8 (bitmap: 1 bit per weight, row-major, most significant bit first)
                       | "col": int16/int32 column of each kept value + "crow": int32 row pointers (csr)}}}

A weight is viewed as a matrix (out, in*kh*kw) for CSR, as in size.py; each layer takes the smaller of
the two encodings. CSR column indices are 2 bytes when a row has at most 65,536 columns (stored as int16
and read back as ``col & 0xFFFF``), else 4. :func:`sparse_to_state_dict` rebuilds the dense state dict
(pruned weights exactly zero) and :func:`load_sparse` loads it into a fresh model; the values are stored
bit for bit, so the outputs are the same as the exported model's.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flipout_repro.analysis.size import sparse_weight_bytes
from flipout_repro.sparsity.masking import Masks
from flipout_repro.rundir import atomic_torch_save

SPARSE_FILE = "pruned_sparse.pt"
FORMAT = "flipout-sparse/1"
_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(keep: torch.Tensor) -> torch.Tensor:
    """A bool tensor, flattened, as uint8 bytes (8 weights a byte, most significant bit first)."""
    flat = keep.flatten().to(torch.uint8)
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 8)])
    return (flat.view(-1, 8) * _BITS).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """The inverse of :func:`pack_bits`: a flat bool tensor of ``numel`` entries."""
    return ((packed.view(-1, 1) & _BITS) != 0).flatten()[:numel]


def encode_weight(weight: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    """One pruned weight as bitmap or CSR, whichever is smaller (size.py's byte counts)."""
    w, keep = weight.detach().cpu().contiguous(), mask.detach().cpu().bool().contiguous()
    rows = w.shape[0]
    matrix_keep = keep.view(rows, -1)
    values = w.view(rows, -1)[matrix_keep].float().clone()  # row-major: the order of both encodings
    entry: dict[str, Any] = {"shape": torch.tensor(list(w.shape), dtype=torch.int64), "values": values}
    size = sparse_weight_bytes(tuple(w.shape), int(values.numel()), 4)
    if size["bitmap"] <= size["csr"]:
        return entry | {"encoding": "bitmap", "bitmap": pack_bits(keep)}
    cols = matrix_keep.shape[1]
    col = matrix_keep.nonzero()[:, 1].to(torch.int32)
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), matrix_keep.sum(dim=1).cumsum(0)]).to(torch.int32)
    return entry | {"encoding": "csr", "col": col.to(torch.int16) if cols <= 65536 else col, "crow": crow}


def decode_weight(entry: dict[str, Any]) -> torch.Tensor:
    """The dense fp32 weight (pruned entries exactly zero) of one :func:`encode_weight` entry."""
    shape = [int(s) for s in entry["shape"]]
    numel = math.prod(shape)
    out = torch.zeros(numel, dtype=torch.float32)
    if entry["encoding"] == "bitmap":
        out[unpack_bits(entry["bitmap"], numel)] = entry["values"]
        return out.view(shape)
    if entry["encoding"] != "csr":
        raise ValueError(f"unknown sparse encoding {entry['encoding']!r}: expected bitmap or csr")
    rows = shape[0]
    col = entry["col"].to(torch.int64) & 0xFFFF if entry["col"].dtype == torch.int16 else entry["col"].long()
    row = torch.repeat_interleave(torch.arange(rows), entry["crow"].long().diff())
    out.view(rows, -1)[row, col] = entry["values"]
    return out.view(shape)


def sparse_state(model: nn.Module, masks: Masks) -> dict[str, Any]:
    """The :data:`FORMAT` dict of ``model`` pruned by ``masks`` (see the module doc)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    pruned = dict(zip(masks.names, masks.values))
    return {"format": FORMAT,
            "dense": {k: v.clone().contiguous() for k, v in state.items() if k not in pruned},
            "sparse": {k: encode_weight(state[k], m) for k, m in pruned.items()}}


def save_sparse(model: nn.Module, masks: Masks, path: Path) -> Path:
    """Write :func:`sparse_state` to ``path`` (atomically); returns ``path``."""
    atomic_torch_save(sparse_state(model, masks), Path(path))
    return Path(path)


def sparse_to_state_dict(blob: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A plain ``state_dict`` (pruned weights exactly zero) from a loaded ``pruned_sparse.pt``."""
    if blob.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file (format={blob.get('format')!r})")
    return {**blob["dense"], **{k: decode_weight(e) for k, e in blob["sparse"].items()}}


def load_sparse(model: nn.Module, path: Path) -> nn.Module:
    """Load ``pruned_sparse.pt`` into ``model`` (a fresh one of the run's architecture); returns it."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    model.load_state_dict(sparse_to_state_dict(blob))
    return model
