"""Storage size of a pruned network: dense fp32, sparse fp32 and sparse int8.

Every tensor of the model's state dict that inference needs (weights, biases, BatchNorm affine and
running statistics; not the integer ``num_batches_tracked``) counts. Non-prunable tensors are stored
dense in fp32 in every format. A prunable weight, viewed as a matrix (out, in*kh*kw), is stored as

- *bitmap*: one bit per weight (kept or not) plus the kept values;
- *CSR*: the kept values, a column index per kept value (2 bytes when a row has at most 65,536
  columns, else 4) and ``out + 1`` row pointers of 4 bytes;

with values of 4 bytes (fp32) or 1 byte (int8, plus a 4-byte fp32 scale per output channel: symmetric
per-channel quantization, zero point 0). The ``sparse_*`` sizes take the smaller of bitmap and CSR for
each layer, as a storage format would.
"""
from __future__ import annotations

import math
from typing import Any

from torch import nn

from flipout_repro.sparsity.masking import Masks


def sparse_weight_bytes(shape: tuple[int, ...], kept: int, value_bytes: int) -> dict[str, int]:
    """Bytes of one pruned weight of ``shape`` with ``kept`` nonzeros, as bitmap and as CSR."""
    rows = shape[0]
    numel = math.prod(shape)
    cols = numel // rows
    scales = 4 * rows if value_bytes == 1 else 0
    index_bytes = 2 if cols <= 65536 else 4
    return {
        "bitmap": math.ceil(numel / 8) + kept * value_bytes + scales,
        "csr": kept * (value_bytes + index_bytes) + 4 * (rows + 1) + scales,
    }


def model_size(model: nn.Module, masks: Masks) -> dict[str, Any]:
    """Sizes in bytes and compression ratios against dense fp32 (see the module docstring)."""
    prunable = set(masks.names)
    other = sum(t.numel() for k, t in model.state_dict().items()
                if k not in prunable and t.is_floating_point())
    sizes = {"bitmap": {4: 0, 1: 0}, "csr": {4: 0, 1: 0}, "best": {4: 0, 1: 0}}
    for mask, kept in zip(masks.values, masks.nonzero_counts()):
        for value_bytes in (4, 1):
            b = sparse_weight_bytes(tuple(mask.shape), kept, value_bytes)
            sizes["bitmap"][value_bytes] += b["bitmap"]
            sizes["csr"][value_bytes] += b["csr"]
            sizes["best"][value_bytes] += min(b["bitmap"], b["csr"])
    dense = 4 * (masks.total() + other)
    out: dict[str, Any] = {
        "dense_fp32_bytes": dense,
        "sparse_fp32_bytes": sizes["best"][4] + 4 * other,
        "sparse_int8_bytes": sizes["best"][1] + 4 * other,
        "sparse_fp32_bitmap_bytes": sizes["bitmap"][4] + 4 * other,
        "sparse_fp32_csr_bytes": sizes["csr"][4] + 4 * other,
        "sparse_int8_bitmap_bytes": sizes["bitmap"][1] + 4 * other,
        "sparse_int8_csr_bytes": sizes["csr"][1] + 4 * other,
        "non_prunable_values": other,
    }
    out["compression_fp32"] = dense / out["sparse_fp32_bytes"]
    out["compression_int8"] = dense / out["sparse_int8_bytes"]
    return out
