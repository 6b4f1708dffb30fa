"""Wide ResNet (Zagoruyko & Komodakis 2016) for 32x32 inputs, as RigL's CIFAR-10 code builds it.

The variant of google-research/rigl rigl/cifar_resnet/resnet_model.py (commit d39fc7d): a 3x3 stem of 16
channels (:99-103), three groups of ``(depth - 4) / 6`` pre-activation blocks of ``16/32/64 x widen``
channels, the first block of groups 2 and 3 with stride 2 (:104-110, :183-192); a block is
BN-ReLU, 3x3 conv, BN-ReLU, dropout (``dropout``: 0.3, the model's default, :41, never overridden by
resnet_train_eval.py:346-352), 3x3 conv, plus the shortcut: the input itself, or, where the channel count
changes, a 1x1 conv (with the block's stride) of the BN-ReLU'd input (:194-215); then BN-ReLU, global
average pool (8x8 on CIFAR), a Linear with bias (:112-124). Convolutions have no bias.

WRN-22-2 for 3 input channels and 10 classes: 1,076,912 prunable weights (1,079,642 parameters).
Differences from the TF code: symmetric padding 1 for the strided 3x3 convs (TF's SAME pads 0 before,
1 after on even sides); PyTorch's default initialisation (TF's glorot-uniform; ``model.init`` offers
kaiming_normal).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WideBlock(nn.Module):
    """Pre-activation block: x + conv(dropout(relu(bn(conv(relu(bn(x))))))), 1x1 shortcut on channel change."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual plus the (projected) shortcut."""
        o = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(o)))))
        return out + skip


class WideResNet(nn.Module):
    """WRN-depth-widen: stem, 3 groups of (depth - 4) / 6 wide blocks, BN-ReLU, average pool, Linear."""

    min_input_size = 4

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32, depth: int = 22,
                 widen: int = 2, dropout: float = 0.3) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"model.depth={depth} must be 6n + 4 with n >= 1, e.g. model.depth=22 (WRN-22-2)")
        if widen < 1:
            raise ValueError(f"model.widen={widen} must be >= 1, e.g. model.widen=2 (WRN-22-2)")
        if not 0 <= dropout < 1:
            raise ValueError(f"model.dropout={dropout} must be in [0, 1), e.g. model.dropout=0.3 (RigL's)")
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        groups, cin = [], 16
        for base, stride in ((16, 1), (32, 2), (64, 2)):
            cout = base * widen
            groups.append(nn.Sequential(*(WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, dropout)
                                          for i in range(n))))
            cin = cout
        self.group1, self.group2, self.group3 = groups
        self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        out = self.group3(self.group2(self.group1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
