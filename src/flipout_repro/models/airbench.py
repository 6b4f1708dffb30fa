"""The airbench94 network (Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU"), as its source
builds it: KellerJordan/cifar10-airbench, commit f1c599c, legacy/airbench94.py (``L<n>`` below).

- A 2x2 **whitening** convolution without padding, ``2 * 2 * 2 * in_channels`` filters (24 for RGB), whose
  weights are set once from the training images (:meth:`AirbenchNet.init_from_data`: the eigenvectors of the
  uncentred second moments of all 2x2 patches of the first 5,000 training images, each divided by
  sqrt(eigenvalue + 5e-4), and their negations, L242-257) and never trained; its bias is trained in the
  first ``whiten_bias_epochs`` epochs only (L230, L410). Its weight is a buffer, not a parameter, and the
  layer is not a ``Conv2d``: it is neither pruned nor counted among the prunable weights.
- GELU, then three groups of conv 3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv 3x3 -> BatchNorm -> GELU
  with ``widths`` channels (64/256/256, L190-208, L222-224), max-pool 3, a Linear without bias, and the
  logits times ``scaling_factor`` (1/9, L225-228).
- BatchNorm with eps 1e-12, running averages kept as ``0.6 * old + 0.4 * new`` (L171-177), its weight frozen
  at 1 (only the bias trains).
- Every 3x3 conv starts from PyTorch's default initialisation with its first ``in_channels`` filters set to
  the identity (``dirac_``, L179-188): most of those filters' weights are exactly 0 at initialisation.

Only 32x32 images fit: the pools bring the whitening layer's 31x31 to 1x1 (:attr:`input_sizes`).
airbench94 for 3 channels and 10 classes: 1,970,176 prunable weights (conv + linear), 1,972,792 parameters
and buffers of the whitening weight.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Whitening(nn.Module):
    """The fixed 2x2 patch-whitening convolution: weight a buffer set from data, bias trained for a while."""

    def __init__(self, in_channels: int, kernel: int = 2) -> None:
        super().__init__()
        width = 2 * in_channels * kernel * kernel
        self.register_buffer("weight", torch.zeros(width, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(width))
        #: whether the bias receives a gradient (:meth:`AirbenchNet.epoch_start` sets it)
        self.train_bias = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv2d with the fixed weight; a detached bias (no gradient, so no update) once it is frozen."""
        bias = self.bias if self.train_bias else self.bias.detach()
        return F.conv2d(x, self.weight, bias, [1, 1], [0, 0], [1, 1], 1)  # stride, padding, dilation, groups: as
        # lists, which int8 tracing needs

    @torch.no_grad()
    def init_from(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """The weights from ``images`` (N x C x H x W, normalised): the eigenvectors of the uncentred second
        moment of every stride-1 patch, largest eigenvalue first, scaled by 1 / sqrt(eigenvalue + eps), then
        their negations (L242-257)."""
        k = self.weight.shape[-1]
        c = images.shape[1]
        patches = images.unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, c, k, k).float()
        flat = patches.view(len(patches), -1)
        cov = (flat.T @ flat) / len(flat)
        values, vectors = torch.linalg.eigh(cov, UPLO="U")
        values, vectors = values.flip(0), vectors.T.flip(0)  # descending
        filters = (vectors / torch.sqrt(values + eps).view(-1, 1)).view(-1, c, k, k)
        self.weight.copy_(torch.cat((filters, -filters)))


def airbench_batchnorm(channels: int, momentum: float = 0.6, eps: float = 1e-12) -> nn.BatchNorm2d:
    """A plain BatchNorm2d (so that tools that know torch's layers, int8 quantization among them, know it)
    with airbench's eps and momentum and its weight frozen at 1 (L171-177)."""
    bn = nn.BatchNorm2d(channels, eps=eps, momentum=1 - momentum)
    bn.weight.requires_grad = False
    return bn


def identity_conv(cin: int, cout: int) -> nn.Conv2d:
    """A 3x3 'same' conv without bias: PyTorch's default initialisation, then its first ``cin`` filters the
    identity (L179-188)."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)  # "same" for 3x3 (int8 kernels take numbers only)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:cin])
    return conv


class ConvGroup(nn.Module):
    """conv -> max-pool 2 -> BN -> GELU -> conv -> BN -> GELU (L190-208; no residual)."""

    def __init__(self, cin: int, cout: int, momentum: float) -> None:
        super().__init__()
        self.conv1 = identity_conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = airbench_batchnorm(cout, momentum)
        self.conv2 = identity_conv(cout, cout)
        self.norm2 = airbench_batchnorm(cout, momentum)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The group's two convolutions."""
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """airbench94's network (module docstring). ``widths``: the three groups' channels (airbench95: 128/384/384)."""

    #: the image sides the network fits (its pools bring 32x32 to 1x1); config.validate checks it
    input_sizes = (32,)
    min_input_size = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32,
                 widths: tuple[int, int, int] | list[int] = (64, 256, 256), batchnorm_momentum: float = 0.6,
                 scaling_factor: float = 1 / 9, whiten_bias_epochs: int = 3, whiten_images: int = 5000,
                 name: str = "airbench94") -> None:
        super().__init__()
        if input_size not in self.input_sizes:
            raise ValueError(f"airbench needs 32x32 images, not {input_size}x{input_size}")
        self.whiten = Whitening(in_channels)
        self.activ = nn.GELU()
        chans = [self.whiten.weight.shape[0], *widths]
        self.groups = nn.Sequential(*(ConvGroup(a, b, batchnorm_momentum) for a, b in zip(chans, chans[1:])))
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(chans[-1], num_classes, bias=False)
        self.scaling_factor = float(scaling_factor)
        self.whiten_bias_epochs = int(whiten_bias_epochs)
        #: how many training images :meth:`init_from_data` takes (training.build gives them)
        self.init_images = int(whiten_images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits times ``scaling_factor``."""
        x = self.pool(self.groups(self.activ(self.whiten(x))))
        return self.head(x.flatten(1)) * self.scaling_factor

    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the whitening weights from the first ``whiten_images`` of ``images`` (normalised training
        images in data-set order, no augmentation: L400-406)."""
        self.whiten.init_from(images[:self.init_images])

    def epoch_start(self, epoch: int) -> None:
        """Before epoch ``epoch`` (from 1) trains: the whitening bias trains in the first
        ``whiten_bias_epochs`` epochs only (L410)."""
        self.whiten.train_bias = epoch <= self.whiten_bias_epochs
