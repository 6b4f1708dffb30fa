"""The VGG of the FORCE reference code (naver/force, experiments/models.py:148-221, commit 7494eed).

It differs from the FlipOut paper's VGG (models/vgg.py) in three ways, all followed here:

- the convolutions have no bias (models.py:185);
- the layouts have no max-pool after the last stage (models.py:148-153): the last stage's map (2x2 for
  32x32 inputs) is averaged to 1x1 (models.py:195-198: AvgPool2d(2) on CIFAR, AvgPool2d(4) on 64x64
  Tiny ImageNet, both a global average there; here AdaptiveAvgPool2d(1) for any size), where ours
  takes a fifth max-pool;
- its own initialisation (models.py:174-175, 204-221): conv weights kaiming-normal with mode fan_out,
  Linear weights N(0, 0.01) and Linear biases 0, BatchNorm weight 1 and bias 0. (The reference's
  training script then re-draws every Conv2d/Linear weight, kaiming-normal fan_in, before pruning:
  that is ``method.init=kaiming_normal`` of FORCE/Iterative SNIP; the Linear bias stays 0.)

The conv layers are those of the standard configurations, so the prunable weights equal the FlipOut
VGG's: 20,024,000 for depth 19, 14,715,584 for depth 16 (3 input channels, 10 classes). Module names
follow the reference (``feature``, ``classifier``), so its state dicts load. The reference builds only
depths 16 and 19 for CIFAR (experiments.py:39-44); 11 and 13 are accepted as in its ``defaultcfg``.
"""
from __future__ import annotations

import torch
from torch import nn

from flipout_repro.models.vgg import check_depth


class VGGForce(nn.Module):
    """VGG with bias-free convs, BN, four max-pools and a global average pool before Linear(512, C)."""

    min_input_size = 16  # four max-pools

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32,
                 depth: int = 19) -> None:
        super().__init__()
        layout = check_depth(depth)[:-1]  # the reference's layouts lack the last "M"
        layers: list[nn.Module] = []
        c = in_channels
        for v in layout:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.feature = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)
        self.apply(reference_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.classifier(torch.flatten(self.pool(self.feature(x)), 1))


@torch.no_grad()
def reference_init(m: nn.Module) -> None:
    """The reference's ``weights_init`` (models.py:204-221), applied module by module in order."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            m.bias.zero_()
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.01)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
