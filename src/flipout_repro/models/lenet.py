"""LeNet-300-100 and LeNet-5 (the Caffe variant of the pruning literature: 20-50-500 units)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNet300100(nn.Module):
    """Fully connected C*H*W -> 300 -> 100 -> classes, ReLU (266,200 prunable weights on MNIST)."""

    min_input_size = 1

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels * input_size * input_size, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(F.relu(self.fc2(x)))


class LeNet5(nn.Module):
    """conv5x5(20) - maxpool - conv5x5(50) - maxpool - fc500 - fc(classes), ReLU.

    This is LeNet-5-Caffe as used by SNIP and most pruning papers (430,500 prunable weights on MNIST),
    not the original 6-16-120-84 network.
    """

    min_input_size = 12

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        side = ((input_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)
        self.pool = nn.MaxPool2d(2)  # a module, so that analysis/layers.py can read its window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))
