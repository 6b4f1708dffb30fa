"""prune_to: exact counts, global vs layer ranking, only ever removes; prunable counts of the models."""
import pytest
import torch
from torch import nn

from flipout_repro.sparsity.budgets import target_zeros
from flipout_repro.sparsity.masking import Masks, count_prunable, prune_to
from flipout_repro.models.densenet import DenseNet121
from flipout_repro.models.lenet import LeNet5, LeNet300100
from flipout_repro.models.resnet import ResNet18
from flipout_repro.models.vgg import VGG19


def two_layer():
    net = nn.Sequential(nn.Linear(2, 2, bias=True), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -4.0], [0.5, 3.0]]))
        net[1].weight.copy_(torch.tensor([[0.1, 2.0], [-0.2, 5.0], [6.0, -0.3]]))
    return net


def test_only_conv_and_linear_weights_are_prunable():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))
    masks = Masks.for_model(net)
    assert masks.names == ["0.weight", "3.weight"]
    assert masks.total() == 18 + 4


def test_global_ranking_removes_the_lowest_scores_over_all_layers():
    net = two_layer()
    masks = Masks.for_model(net)
    scores = [p.detach().abs() for p in masks.params]
    removed = prune_to(scores, masks, 0.4, "global")  # 10 weights -> 4 zeros: 0.1, 0.2, 0.3, 0.5
    assert removed == 4
    assert masks.values[0].tolist() == [[1, 1], [0, 1]]
    assert masks.values[1].tolist() == [[0, 1], [0, 1], [1, 0]]
    assert net[0].weight[1, 0] == 0 and net[1].weight[2, 1] == 0  # weights are zeroed too
    assert net[0].bias.count_nonzero() == 2  # biases are never pruned


def test_layer_ranking_prunes_every_layer_to_the_same_fraction():
    net = two_layer()
    masks = Masks.for_model(net)
    prune_to([p.detach().abs() for p in masks.params], masks, 0.5, "layer")
    assert masks.values[0].tolist() == [[0, 1], [0, 1]]  # 2 of 4: 1.0 and 0.5 go
    assert masks.values[1].tolist() == [[0, 1], [0, 1], [1, 0]]  # 3 of 6: 0.1, 0.2, 0.3 go
    assert masks.layer_sparsity() == {"0.weight": 0.5, "1.weight": 0.5}


def test_pruning_only_removes_even_when_pruned_weights_score_highest():
    net = two_layer()
    masks = Masks.for_model(net)
    prune_to([p.detach().abs() for p in masks.params], masks, 0.2, "global")  # 0.1, 0.2 go
    high_for_pruned = [torch.where(m.bool(), torch.zeros_like(m), torch.full_like(m, 100.0))
                       for m in masks.values]
    prune_to(high_for_pruned, masks, 0.3, "global")
    assert sum(masks.nonzero_counts()) == 7
    assert masks.values[1][0, 0] == 0 and masks.values[1][1, 0] == 0  # still pruned
    # asking for less sparsity than there is changes nothing
    assert prune_to([torch.rand_like(m) for m in masks.values], masks, 0.1, "global") == 0
    assert masks.sparsity() == pytest.approx(0.3)


def test_exact_count_with_ties_and_odd_targets():
    net = nn.Sequential(nn.Linear(100, 37, bias=False), nn.Linear(37, 13, bias=False))
    masks = Masks.for_model(net)
    ties = [torch.ones_like(m) for m in masks.values]  # every score equal
    for s in (0.5, 0.75, 0.996):
        prune_to(ties, masks, s, "global")
        assert masks.total() - sum(masks.nonzero_counts()) == target_zeros(masks.total(), s)


def test_state_dict_roundtrip():
    net = two_layer()
    masks = Masks.for_model(net)
    prune_to([p.detach().abs() for p in masks.params], masks, 0.5)
    other = Masks.for_model(two_layer())
    other.load_state_dict(masks.state_dict())
    assert [m.tolist() for m in other.values] == [m.tolist() for m in masks.values] and other.active


@pytest.mark.parametrize("cls, kwargs, expected", [
    (VGG19, {}, 20_024_000),
    (ResNet18, {}, 11_164_352),
    (DenseNet121, {}, 6_880_448),
    (LeNet300100, {}, 266_200),
    (LeNet5, {}, 430_500),
])
def test_prunable_counts_of_the_paper_models(cls, kwargs, expected):
    assert count_prunable(cls(**kwargs)) == expected


def test_models_follow_the_dataset_shape():
    assert LeNet300100(in_channels=3, num_classes=100, input_size=32)(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert LeNet5(in_channels=3, num_classes=10, input_size=32)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert ResNet18(in_channels=1, num_classes=10)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    net = DenseNet121(num_classes=100, stem="cifar")
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_kept_counts_follow_every_in_place_change_of_a_mask():
    """Masks.nonzero_counts is remembered between changes: any in-place change is seen."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    masks = Masks.for_model(model)
    assert masks.nonzero_counts() == [12, 6] and masks.sparsity() == 0.0
    masks.values[0][0, 0] = 0  # an indexed write
    assert masks.nonzero_counts() == [11, 6]
    masks.values[1].mul_(0)
    assert masks.nonzero_counts() == [11, 0]
    masks.load_state_dict({"names": masks.names, "masks": [torch.ones(3, 4, dtype=torch.bool),
                                                           torch.eye(2, 3, dtype=torch.bool)], "active": True})
    assert masks.nonzero_counts() == [12, 2]
    prune_to([torch.arange(12.0).view(3, 4), torch.arange(6.0).view(2, 3)], masks, 0.5)
    assert masks.nonzero_counts() == [sum(masks.values[0].flatten() != 0), sum(masks.values[1].flatten() != 0)]
    assert sum(masks.nonzero_counts()) == 9
    masks.values = [torch.zeros(3, 4), torch.ones(2, 3)]  # new tensors altogether
    assert masks.nonzero_counts() == [0, 6]
    counts = masks.nonzero_counts()
    counts[0] = 99  # the caller's list is its own
    assert masks.nonzero_counts() == [0, 6]
