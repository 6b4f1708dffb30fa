"""DenseNet121 as the FlipOut paper used it: torchvision's densenet121, trained from scratch.

Prunable weights for 3 input channels and 10 classes: 6,880,448 (the paper's count, ImageNet stem).
``stem="cifar"`` swaps the 7x7/stride-2 conv and max-pool for one 3x3/stride-1 conv, the usual choice
for 32x32 inputs (not the paper's; 6,872,768 prunable weights for 10 classes).
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn


class DenseNet121(nn.Module):
    """torchvision.models.densenet121(num_classes=C), with the input channels and stem adapted."""

    min_input_size = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 224,
                 stem: str = "imagenet") -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"model.stem={stem!r} must be 'imagenet' (the paper's) or 'cifar'")
        net = torchvision.models.densenet121(weights=None, num_classes=num_classes)
        if stem == "cifar":
            net.features.conv0 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            net.features.pool0 = nn.Identity()
        elif in_channels != 3:
            net.features.conv0 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.net(x)
