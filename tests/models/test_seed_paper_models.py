"""The models of the seed papers: prunable-weight counts computed by hand from the architectures, VGG19
unchanged by the depth knob, and bad depths refused before anything is written."""
import pytest
import torch
from torch import nn

from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.masking import count_prunable
from flipout_repro.models.resnet50 import ResNet50
from flipout_repro.models.resnet50_cifar import ResNet50CIFAR
from flipout_repro.models.vgg import VGG, VGG19
from flipout_repro.models.vgg_force import VGGForce
from helpers import run_hash
from flipout_repro.run import run
from helpers import make_cfg

K = 9  # a 3x3 kernel
# Bottleneck stages (planes, blocks): the first block of each stage has a 1x1 shortcut conv (in -> 4 planes)
STAGES = ((64, 3, 64), (128, 4, 256), (256, 6, 512), (512, 3, 1024))  # (planes, blocks, input channels)


def bottleneck_convs() -> int:
    """conv1 (in x p) + conv2 (p x p x 9) + conv3 (p x 4p) per block, + the shortcut (in x 4p) once."""
    total = 0
    for p, blocks, cin in STAGES:
        total += cin * p + p * p * K + p * 4 * p + cin * 4 * p  # first block, with its shortcut
        total += (blocks - 1) * (4 * p * p + p * p * K + p * 4 * p)
    return total


def test_bottleneck_convs_by_hand():
    # layer1 212,992 + layer2 1,212,416 + layer3 7,077,888 + layer4 14,942,208
    assert bottleneck_convs() == 212_992 + 1_212_416 + 7_077_888 + 14_942_208 == 23_445_504


@pytest.mark.parametrize("make, expected", [
    # FORCE's CIFAR ResNet50: 3x3 stem 3*64*9 + blocks + Linear 2048 x 100
    (lambda: ResNet50CIFAR(num_classes=100), 1_728 + 23_445_504 + 204_800),
    (lambda: ResNet50CIFAR(num_classes=10), 1_728 + 23_445_504 + 20_480),
    # torchvision's ResNet50: 7x7 stem 3*64*49 + blocks + Linear 2048 x 1000
    (lambda: ResNet50(num_classes=1000), 9_408 + 23_445_504 + 2_048_000),
    (lambda: ResNet50(in_channels=1, num_classes=10), 3_136 + 23_445_504 + 20_480),
])
def test_resnet50_prunable_counts(make, expected):
    assert count_prunable(make()) == expected
    assert count_prunable(ResNet50CIFAR(num_classes=100)) == 23_652_032


def vgg_convs(layout) -> int:
    c, total = 3, 0
    for v in layout:
        if v != "M":
            total, c = total + c * v * K, v
    return total


@pytest.mark.parametrize("depth, expected", [(11, 9_222_848), (13, 9_407_168), (16, 14_715_584), (19, 20_024_000)])
def test_vgg_prunable_counts_at_every_depth(depth, expected):
    # 16: 3*64*9 + 64*64*9 + 64*128*9 + 128*128*9 + 128*256*9 + 2*256*256*9 + 256*512*9 + 5*512*512*9 + 512*10
    by_hand = {16: 1_728 + 36_864 + 73_728 + 147_456 + 294_912 + 2 * 589_824 + 1_179_648 + 5 * 2_359_296 + 5_120}
    if depth in by_hand:
        assert by_hand[depth] == expected
    assert count_prunable(VGG(depth=depth)) == expected
    assert count_prunable(VGGForce(depth=depth)) == expected  # same convs; no conv bias, which is not pruned anyway


def test_vgg19_is_the_model_it_was():
    net = VGG19()
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 16 and len(pools) == 5 and all(c.bias is not None for c in convs)
    assert isinstance(net.features[-1], nn.MaxPool2d)  # the fifth pool, after the last stage
    names = [n for n, _ in net.named_parameters()]
    assert names[:4] == ["features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias"]
    assert names[-2:] == ["classifier.weight", "classifier.bias"] and len(names) == 16 * 4 + 2
    torch.manual_seed(0)
    a = VGG19().state_dict()
    torch.manual_seed(0)
    b = VGG(depth=19).state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_force_vgg_differs_as_the_reference_does():
    net = VGGForce()
    convs = [m for m in net.feature if isinstance(m, nn.Conv2d)]
    assert len(convs) == 16 and all(c.bias is None for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.feature) == 4
    assert torch.count_nonzero(net.classifier.bias) == 0  # the reference's init: Linear bias 0
    assert abs(net.classifier.weight.std().item() - 0.01) < 0.001  # and weights N(0, 0.01)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert VGGForce(num_classes=100, depth=16)(torch.zeros(2, 3, 16, 16)).shape == (2, 100)


def test_new_models_follow_the_dataset_shape():
    assert ResNet50CIFAR(num_classes=100)(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert ResNet50(in_channels=1, num_classes=10)(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    assert VGG(in_channels=1, depth=11)(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("bad", [12, 20, True])
def test_bad_vgg_depth(bad):
    for cls in (VGG, VGGForce):
        with pytest.raises(ValueError, match="model.depth"):
            cls(depth=bad)


def test_bad_depth_fails_before_anything_is_written(quick_cfg, tmp_path):
    cfg = quick_cfg("model=vgg16", "model.depth=12", "dataset.resize=32", "dataset.image_size=32", "epochs=10")
    with pytest.raises(ConfigError, match="model.depth=12"):
        run(cfg)
    assert not (tmp_path / "runs").exists()


def test_vgg_depth_19_keeps_the_hash():
    base = run_hash(make_cfg("model=vgg19"))
    assert make_cfg("model=vgg19").model.depth == 19
    assert run_hash(make_cfg("model=vgg19", "model.depth=19")) == base
    assert run_hash(make_cfg("model=vgg19", "model.depth=16")) != base
