"""VGG for 32x32 inputs as in the FlipOut paper: conv3x3+BN+ReLU stages, 5 max-pools, one Linear(512, C).

``depth`` picks one of the standard configurations (Simonyan & Zisserman 2015, table 1, A/B/D/E: 11, 13,
16, 19 weight layers counting the classifier as three fully connected layers; here the convolutions are
followed by a single Linear). Prunable weights for 3 input channels and 10 classes: 9,222,848 (11),
9,407,168 (13), 14,715,584 (16), 20,024,000 (19, the FlipOut paper's).
"""
from __future__ import annotations

import torch
from torch import nn

LAYOUTS: dict[int, tuple] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def check_depth(depth: int) -> tuple:
    """The layout of ``depth``, or a ValueError naming the choices."""
    if isinstance(depth, bool) or depth not in LAYOUTS:
        raise ValueError(f"model.depth={depth!r} must be one of {sorted(LAYOUTS)}: e.g. model.depth=16")
    return LAYOUTS[depth]


class VGG(nn.Module):
    """The CIFAR VGG of the FlipOut paper's code (conv layers keep their bias; it is never pruned)."""

    min_input_size = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32,
                 depth: int = 19) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in check_depth(depth):
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


class VGG19(VGG):
    """The FlipOut paper's VGG19: ``VGG`` at its default depth, under the name its config (and so its
    run hashes) uses; ``model.depth`` picks another depth."""
