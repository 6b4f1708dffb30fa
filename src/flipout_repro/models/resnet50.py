"""ResNet50 as the STR paper trained it on ImageNet: torchvision's resnet50, from scratch.

torchvision.models.resnet50(weights=None, num_classes=C): 7x7/stride-2 stem conv and 3x3 max-pool,
bottleneck blocks [3, 4, 6, 3] with the stride in the 3x3 conv ("v1.5"), torchvision's initialisation
(kaiming-normal fan_out convs, BN 1/0, zero_init_residual=False). Only the stem conv changes, and only
when the images do not have 3 channels (re-drawn like torchvision's other convs).

Prunable weights for 3 input channels and 1000 classes: 25,502,912 (9,408 stem + 23,445,504 in the
blocks + 2,048,000 in the classifier); 2,048 per class in the classifier.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn


class ResNet50(nn.Module):
    """torchvision.models.resnet50(num_classes=C), with the input channels adapted."""

    min_input_size = 32  # five stride-2 steps bring 32x32 to 1x1

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, input_size: int = 224) -> None:
        super().__init__()
        net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.net(x)
