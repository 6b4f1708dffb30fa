"""Weight initialisations applied to a built model, so that every model offers the same ones (``model.init``).

``default`` keeps each layer's own PyTorch initialisation. ``kaiming_normal`` is STR's
(RAIVNLab/STR utils/builder.py:134-146, with ``mode: fan_in`` and ``nonlinearity: relu`` from
configs/largescale/resnet50-str.yaml:26-28): every convolution's weight ~ N(0, 2 / fan_in). STR builds
every convolution, the classifier included (a 1x1 convolution, models/resnet.py:114), through that
builder, so here every Conv2d and Linear weight is drawn that way. STR's layers have no biases
(builder.py:24-53, ``bias=False``); ours that have one start at 0 (our choice: the function at
initialisation is then the bias-free one). BatchNorm keeps PyTorch's weight 1, bias 0, as in STR
(utils/bn_type.py:3, a plain nn.BatchNorm2d).
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def initialize(model: nn.Module, how: str) -> nn.Module:
    """Re-initialise ``model``'s Conv2d/Linear layers as ``how`` says (``default``: leave them); returns it."""
    if how == "default":
        return model
    if how != "kaiming_normal":
        raise ValueError(f"model.init={how!r} is not an initialisation: use default or kaiming_normal")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                module.bias.zero_()
    return model
