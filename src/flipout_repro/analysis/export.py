"""Export a pruned network so that standard PyTorch code can load it.

Three files, all plain tensors (load with ``torch.load(path, weights_only=True)``):

- ``pruned_state_dict.pt``: ``model.state_dict()`` with the pruned weights exactly zero; loads into a
  fresh model with ``model.load_state_dict``.
- ``pruned_prune_layout.pt``: the same state dict in ``torch.nn.utils.prune``'s layout: every prunable
  ``<layer>.weight`` is replaced by ``<layer>.weight_orig`` (the weights) and ``<layer>.weight_mask``
  (1.0 kept, 0.0 pruned). Load it with :func:`load_prune_layout`, or by hand::

      for module in (m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))):
          torch.nn.utils.prune.identity(module, "weight")
      model.load_state_dict(torch.load("pruned_prune_layout.pt", weights_only=True))

  after which ``module.weight`` is ``weight_orig * weight_mask`` and stays masked when fine-tuned;
  ``prune.remove(module, "weight")`` makes the pruning permanent.
- ``pruned_sparse.pt``: only the kept weights (bitmap or CSR per layer, analysis/sparse_export.py), the
  small file; :func:`flipout_repro.analysis.sparse_export.load_sparse` loads it into a fresh model.

The first two are full size (a pruned weight is a stored zero); the third is about the
``sparse_fp32_bytes`` of analysis/size.py.

An N:M run's export is checked for torch's 2:4 semi-structured tensors (:func:`nm_summary`, in its
summary.json): the mask passes ``patterns.is_nm``, and each 2:4 weight, flattened to 2-D and zero-padded
to the kernels' multiples, is what ``torch.sparse.to_sparse_semi_structured`` accepts in float16/bfloat16
(the conversion itself needs a CUDA GPU; here the layout is checked, not converted).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from flipout_repro.analysis.sparse_export import SPARSE_FILE, save_sparse
from flipout_repro.sparsity.masking import Masks
from flipout_repro.sparsity.patterns import is_nm, semi_structured_padding, semi_structured_problem
from flipout_repro.rundir import atomic_torch_save, real_folder

STATE_DICT_FILE = "pruned_state_dict.pt"
PRUNE_LAYOUT_FILE = "pruned_prune_layout.pt"


def plain_state_dict(model: nn.Module, masks: Masks) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` on CPU with every pruned weight set to exactly zero."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for name, mask in zip(masks.names, masks.values):
        state[name] = state[name].contiguous() * mask.detach().cpu().to(state[name].dtype).contiguous()
    return state


def prune_layout_state_dict(model: nn.Module, masks: Masks) -> dict[str, torch.Tensor]:
    """The state dict in torch.nn.utils.prune's layout (``weight_orig`` + ``weight_mask``)."""
    state = plain_state_dict(model, masks)
    for name, mask in zip(masks.names, masks.values):
        stem = name[: -len("weight")]  # "fc1." (or "" for a model that is one layer)
        state[f"{stem}weight_orig"] = state.pop(name)
        state[f"{stem}weight_mask"] = mask.detach().cpu().float().contiguous()
    return state


def export(model: nn.Module, masks: Masks, out_dir: Path) -> dict[str, str]:
    """Write the three files into ``out_dir`` (atomically); return their paths by kind."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        real_folder(out_dir, out_dir.parent)  # refused: nothing is written through a link
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"state_dict": out_dir / STATE_DICT_FILE, "prune_layout": out_dir / PRUNE_LAYOUT_FILE,
             "sparse": out_dir / SPARSE_FILE}
    written: list[Path] = []
    try:
        atomic_torch_save(plain_state_dict(model, masks), paths["state_dict"])
        written.append(paths["state_dict"])
        atomic_torch_save(prune_layout_state_dict(model, masks), paths["prune_layout"])
        written.append(paths["prune_layout"])
        save_sparse(model, masks, paths["sparse"])
    except BaseException:  # a full disk half way: this export's files go, none is left half of one
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return {k: str(v) for k, v in paths.items()}


def load_prune_layout(model: nn.Module, path: Path) -> nn.Module:
    """Load a ``pruned_prune_layout.pt`` into a fresh ``model`` the standard way (see module doc):
    ``prune.identity`` on every Conv2d/Linear weight, then ``load_state_dict``. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            prune.identity(module, "weight")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    for module in model.modules():  # prune recomputes ``weight`` before each forward; do it now too
        if hasattr(module, "weight_mask"):
            module.weight = module.weight_orig * module.weight_mask
    return model


def nm_summary(masks: Masks, n: int, m: int, dense: set[int]) -> dict:
    """An N:M run's pattern record: whether every layer but the ``dense`` ones passes ``is_nm``, and for
    2:4 each layer's semi-structured layout (None: loadable as is after padding; else why not)."""
    layers = {}
    for i, (name, mask) in enumerate(zip(masks.names, masks.values)):
        entry: dict = {"dense": i in dense, "is_nm": is_nm(mask, n, m)}
        if (n, m) == (2, 4) and i not in dense:
            entry["semi_structured_problem"] = semi_structured_problem(mask.float())
            entry["semi_structured_padded_shape"] = list(semi_structured_padding(mask.shape))
        layers[name] = entry
    return {"name": "nm", "n": n, "m": m, "is_nm": all(v["is_nm"] for v in layers.values() if not v["dense"]),
            "layers": layers}
