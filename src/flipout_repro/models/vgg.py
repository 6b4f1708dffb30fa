"""VGG19 for 32x32 inputs as in the FlipOut paper: 16 conv3x3+BN+ReLU, 5 max-pools, one Linear(512, C).

Prunable weights for 3 input channels and 10 classes: 20,024,000.
"""
from __future__ import annotations

import torch
from torch import nn

VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class VGG19(nn.Module):
    """The CIFAR VGG19 of the paper's code (conv layers keep their bias; it is never pruned)."""

    min_input_size = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG19_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        # Inputs larger than 32x32 leave a spatial map after five pools; average it away.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
