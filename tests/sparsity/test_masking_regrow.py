"""drop_and_grow: which weights drop and grow, exact per-layer counts, ties by position, grown weights at
0, the two readings of "may a weight just dropped grow back"."""
import pytest
import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks, drop_and_grow


def layer(mask, weights):
    """One Linear(3, 2) layer with the given flat mask and weights (weights under the mask zeroed)."""
    net = nn.Sequential(nn.Linear(3, 2, bias=False))
    masks = Masks.for_model(net)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(weights, dtype=torch.float32).view(2, 3))
        masks.values[0].copy_(torch.tensor(mask, dtype=torch.float32).view(2, 3))
    masks.active = True
    masks.apply_to_weights()
    return net, masks


def flat(t):
    return [int(v) for v in t.flatten().tolist()]


# active: 0..3 (|w| = 0.5, 0.1, 0.9, 0.1); inactive: 4, 5
MASK, W = [1, 1, 1, 1, 0, 0], [0.5, -0.1, 0.9, 0.1, 0.0, 0.0]
DROP = [torch.tensor([0.5, 0.1, 0.9, 0.1, 7.0, 7.0]).view(2, 3)]  # inactive scores must not matter
GROW = [torch.tensor([0.0, 5.0, 0.0, 3.0, 4.0, 1.0]).view(2, 3)]


def test_drop_the_lowest_and_grow_the_highest_a_dropped_weight_may_grow_back():
    net, masks = layer(MASK, W)
    out = drop_and_grow(DROP, GROW, masks, [2])
    # drop: 1 and 3 (0.1, 0.1); candidates 1, 3, 4, 5 with 5, 3, 4, 1 -> grow 1 (back) and 4
    assert flat(masks.values[0]) == [1, 1, 1, 0, 1, 0]
    assert out.dropped == [2] and out.grown == [2]
    assert flat(out.new[0]) == [0, 0, 0, 0, 1, 0]  # 1 was active before: not new
    w = net[0].weight.detach().flatten().tolist()
    assert w[1] == pytest.approx(-0.1)  # grown back: keeps its value (RigL's reference)
    assert w[3] == 0 and w[4] == 0  # dropped: zeroed; grown: starts at 0
    assert int(masks.values[0].sum()) == 4


def test_without_regrow_dropped_only_weights_inactive_before_can_grow():
    net, masks = layer(MASK, W)
    out = drop_and_grow(DROP, GROW, masks, [2], regrow_dropped=False)
    assert flat(masks.values[0]) == [1, 0, 1, 0, 1, 1]
    assert flat(out.new[0]) == [0, 0, 0, 0, 1, 1]
    assert out.dropped == out.grown == [2]
    assert net[0].weight.detach().flatten().tolist()[1] == 0


def test_without_regrow_dropped_the_count_is_capped_by_the_inactive_weights():
    _, masks = layer([1, 1, 1, 1, 1, 0], [1.0, 2, 3, 4, 5, 0])
    out = drop_and_grow([torch.arange(6.0).view(2, 3)], [torch.ones(2, 3)], masks, [3], regrow_dropped=False)
    assert out.dropped == out.grown == [1]  # one inactive weight: one swap
    assert flat(masks.values[0]) == [0, 1, 1, 1, 1, 1]


def test_ties_break_by_position():
    _, masks = layer([1, 1, 1, 0, 0, 0], [1.0, 1, 1, 0, 0, 0])
    out = drop_and_grow([torch.ones(2, 3)], [torch.ones(2, 3)], masks, [1], regrow_dropped=False)
    # drop: the first of three equal scores (0); grow: the first of three equal candidates (3)
    assert flat(masks.values[0]) == [0, 1, 1, 1, 0, 0]
    assert flat(out.new[0]) == [0, 0, 0, 1, 0, 0]


def test_counts_stay_exact_in_every_layer_and_zero_count_changes_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 5))
    masks = Masks.for_model(net)
    for m in masks.values:
        m.copy_((torch.rand_like(m) < 0.3).float())
    masks.active = True
    before = masks.nonzero_counts()
    snapshot = [m.clone() for m in masks.values]
    drop_and_grow([torch.rand_like(p) for p in masks.params], [torch.rand_like(p) for p in masks.params], masks,
                  [0, 0])
    assert all(torch.equal(a, b) for a, b in zip(snapshot, masks.values))
    for regrow in (True, False):
        out = drop_and_grow([p.detach().abs() for p in masks.params], [torch.rand_like(p) for p in masks.params],
                            masks, [5, 2], regrow_dropped=regrow)
        assert masks.nonzero_counts() == before
        assert out.dropped == out.grown == [5, 2]
        assert all(int(n.sum()) <= k for n, k in zip(out.new, [5, 2]))
    assert all(((p.detach() != 0) <= m.bool()).all() for p, m in zip(masks.params, masks.values))


def test_bad_input_is_refused():
    _, masks = layer(MASK, W)
    with pytest.raises(ValueError, match="counts"):
        drop_and_grow(DROP, GROW, masks, [1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        drop_and_grow(DROP, GROW, masks, [-1])
