"""airbench94's network: its size, its identity-initialised convs, the whitening layer set from data and left
out of the prunable weights, the bias that trains for three epochs, and the image side it refuses."""
import pytest
import torch

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.models.airbench import AirbenchNet
from flipout_repro.sparsity.masking import Masks
from flipout_repro.training.build import build_model


def test_size_and_prunable_set_are_the_sources():
    torch.manual_seed(0)
    model = build_model(make_cfg("experiment=airbench94").model, 3, 10, 32)
    masks = Masks.for_model(model)
    # conv + linear weights: 1,970,176 (legacy/airbench94.py's net, counted on its own instantiation)
    assert masks.total() == 1_970_176
    assert "whiten.weight" not in masks.names and len(masks.names) == 7
    params = sum(p.numel() for p in model.parameters()) + model.whiten.weight.numel()
    assert params == 1_972_792
    # BatchNorm: eps 1e-12, running = 0.6 old + 0.4 batch, weight frozen at 1
    bn = model.groups[0].norm1
    assert bn.eps == 1e-12 and bn.momentum == pytest.approx(0.4) and not bn.weight.requires_grad


def test_convs_start_as_identities():
    torch.manual_seed(0)
    model = AirbenchNet(3, 10, 32)
    g = model.groups
    # the first in_channels filters are the identity: one 1 at the centre of their own channel
    w = g[0].conv2.weight.detach()
    assert torch.equal(w[:, :, 1, 1], torch.eye(64)) and int((w != 0).sum()) == 64
    w1 = g[0].conv1.weight.detach()
    assert torch.equal(w1[:24, :, 1, 1], torch.eye(24)) and int((w1[:24] != 0).sum()) == 24
    assert int((w1[24:] == 0).sum()) == 0  # the other 40 filters keep PyTorch's init
    zeros = sum(int((m.weight == 0).sum()) for m in [g[0].conv1, g[0].conv2, g[1].conv1, g[1].conv2,
                                                   g[2].conv1, g[2].conv2, model.head])
    assert zeros == 1_847_464  # 93.8 % of the prunable weights


def test_whitening_weights_whiten_the_patches():
    torch.manual_seed(0)
    images = torch.randn(40, 3, 32, 32) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + 0.3
    images[:, 1] += 0.8 * images[:, 0]  # correlated channels
    model = AirbenchNet(3, 10, 32, whiten_images=30)
    model.init_from_data(images)
    w = model.whiten.weight
    assert w.shape == (24, 3, 2, 2) and torch.equal(w[12:], -w[:12])
    patches = images[:30].unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    cov = patches.T @ patches / len(patches)  # uncentred, of the first 30 images only
    values = torch.linalg.eigvalsh(cov).flip(0)
    f = w[:12].reshape(12, 12)
    # each filter is a unit eigenvector over sqrt(eigenvalue + 5e-4), largest first
    expect = torch.diag(values / (values + 5e-4))
    assert torch.allclose(f @ cov @ f.T, expect, atol=1e-4)


def test_whitening_bias_trains_three_epochs():
    model = AirbenchNet(3, 10, 32, widths=(8, 8, 8))
    x = torch.randn(2, 3, 32, 32)
    for epoch, trains in [(1, True), (3, True), (4, False), (10, False)]:
        model.zero_grad(set_to_none=True)
        model.epoch_start(epoch)
        model(x).sum().backward()
        assert (model.whiten.bias.grad is not None) == trains
        assert model.head.weight.grad is not None


def test_only_32x32_images():
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("experiment=airbench94", "dataset=tiny_imagenet", "dataset.num_classes=200"))
    msg = str(err.value)
    assert "dataset.image_size" in msg and "64" in msg and "32x32" in msg and "\n" not in msg
    with pytest.raises(ValueError):
        AirbenchNet(3, 10, 28)
