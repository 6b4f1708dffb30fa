"""The CIFAR ResNet50 of the FORCE reference code (naver/force, experiments/models.py:40-128, commit 7494eed).

Bottleneck blocks [3, 4, 6, 3] of 64/128/256/512 planes (expansion 4), a 3x3/stride-1 stem conv without
max-pool (models.py:88-89), the stride on each stage's first block in its 3x3 conv (models.py:47, 99), a
1x1-conv + BN shortcut where the shape changes (models.py:56-61), global average pool and
Linear(2048, C) (models.py:94-95). No conv has a bias; initialisation is PyTorch's default (the
reference sets none; its training script re-draws the Conv2d/Linear weights before pruning, which is
``method.init=kaiming_normal`` of FORCE/Iterative SNIP). Module names follow the reference, so its state
dicts load.

Left out because at the reference's defaults they are the identity: the Stable-ResNet factor
``L ** -0.5`` with L = 1 (models.py:54, 67, 84) and the logit temperature 1.0 (models.py:114, 127).

Prunable weights (3 input channels): 23,447,232 convolution weights + 2,048 C; 23,652,032 for 100 classes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4 planes) convs with BN, plus an identity or 1x1-conv shortcut."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = self.expansion * planes
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNet50CIFAR(nn.Module):
    """[3, 4, 6, 3] bottleneck blocks on a 3x3 stem, global average pool, Linear(2048, C)."""

    min_input_size = 8  # three stride-2 stages

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, stages = 64, []
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layer = []
            for s in [stride] + [1] * (blocks - 1):
                layer.append(Bottleneck(cin, planes, s))
                cin = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(self.avgpool(out), 1))
