"""Layer budgets (budget=): ERK densities, the capped re-solve, dense first/last layers, exact counts."""
import pytest
import torch
from torch import nn

from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.budgets import Budget, apportion, check, erk_densities, erk_raw, layer_zeros
from flipout_repro.sparsity.masking import Masks, prune_to


def toy(*dims: tuple[int, int]) -> Masks:
    """Masks of a stack of Linear(in, out) layers."""
    return Masks.for_model(nn.Sequential(*[nn.Linear(i, o, bias=False) for i, o in dims]))


def test_erk_raw_density_of_a_linear_and_a_conv():
    assert erk_raw((2, 4)) == pytest.approx(6 / 8)  # Linear 4 -> 2: (4 + 2) / (4 * 2)
    assert erk_raw((4, 2, 3, 3)) == pytest.approx(12 / 72)  # Conv 2 -> 4, 3x3: (2 + 4 + 3 + 3) / (2 * 4 * 3 * 3)


def test_erk_densities_of_a_two_layer_net_by_hand():
    # Linear(4, 4): 16 weights, raw (4 + 4) / 16 = 0.5; Linear(4, 2): 8 weights, raw (4 + 2) / 8 = 0.75.
    # Sparsity 0.5 keeps 12 of 24: eps (0.5 * 16 + 0.75 * 8) = 14 eps = 12, eps = 6/7:
    # densities 0.5 * 6/7 = 3/7 and 0.75 * 6/7 = 9/14 (kept 6.857 + 5.143 = 12).
    dens = erk_densities([(4, 4), (2, 4)], 0.5)
    assert dens == pytest.approx([3 / 7, 9 / 14])
    # zeros 16 - 6.857 = 9.143 and 8 - 5.143 = 2.857: floors 9 + 2 = 11, the 12th to the larger remainder
    assert layer_zeros([(4, 4), (2, 4)], [0, 0], 12, Budget("erk")) == [9, 3]
    masks = toy((4, 4), (4, 2))
    prune_to([torch.rand_like(m) for m in masks.values], masks, 0.5, Budget("erk"))
    assert masks.nonzero_counts() == [16 - 9, 8 - 3]


def test_erk_caps_a_layer_past_density_one_and_re_solves_the_rest():
    # Linear(8, 8): 64 weights, raw 16/64 = 0.25; Linear(8, 2): 16 weights, raw 10/16 = 0.625.
    # Sparsity 0.4 keeps 48 of 80: eps = 48 / (0.25 * 64 + 0.625 * 16) = 48/26, so the small layer would
    # get 0.625 * 48/26 = 1.15 > 1: it is dense (16 kept) and the big one keeps 48 - 16 = 32 of 64 (0.5).
    assert erk_densities([(8, 8), (2, 8)], 0.6) == pytest.approx([0.5, 1.0])
    masks = toy((8, 8), (8, 2))
    prune_to([torch.rand_like(m) for m in masks.values], masks, 0.4, Budget("erk"))
    assert masks.nonzero_counts() == [32, 16]


def test_dense_first_and_last_keep_those_layers_and_the_rest_hits_the_target():
    scores = lambda masks: [torch.rand_like(m) for m in masks.values]  # noqa: E731
    # 16 + 16 + 8 = 40 weights; sparsity 0.25 = 10 zeros
    masks = toy((4, 4), (4, 4), (4, 2))
    prune_to(scores(masks), masks, 0.25, Budget("global", dense_first=True))
    assert masks.nonzero_counts()[0] == 16 and sum(masks.nonzero_counts()) == 30
    masks = toy((4, 4), (4, 4), (4, 2))
    prune_to(scores(masks), masks, 0.25, Budget("uniform", dense_first=True, dense_last=True))
    assert masks.nonzero_counts() == [16, 6, 8]  # all 10 zeros in the middle layer
    masks = toy((4, 4), (4, 4), (4, 2))
    # uniform over the 24 weights of layers 2 and 3: 10 * 16/24 = 6.67 and 10 * 8/24 = 3.33 -> 7 and 3
    prune_to(scores(masks), masks, 0.25, Budget("uniform", dense_first=True))
    assert masks.nonzero_counts() == [16, 9, 5]
    masks = toy((4, 4), (4, 4), (4, 2))
    prune_to(scores(masks), masks, 0.25, Budget("erk", dense_last=True))
    assert masks.nonzero_counts()[2] == 8 and sum(masks.nonzero_counts()) == 30


def test_plain_global_and_uniform_budgets_equal_the_scopes():
    torch.manual_seed(0)
    s = [torch.rand(4, 4), torch.rand(2, 4)]
    for budget, scope in ((Budget("global"), "global"), (Budget("uniform"), "layer")):
        a, b = toy((4, 4), (4, 2)), toy((4, 4), (4, 2))
        prune_to(s, a, 0.3, budget, "remove_floor", 0.3)
        prune_to(s, b, 0.3, scope, "remove_floor", 0.3)
        assert all(torch.equal(x, y) for x, y in zip(a.values, b.values))


def test_a_later_event_never_revives_and_still_lands_exactly():
    masks = toy((4, 4), (4, 2))
    prune_to([torch.rand_like(m) for m in masks.values], masks, 0.25, Budget("erk"))
    first = [m.clone() for m in masks.values]
    prune_to([torch.rand_like(m) for m in masks.values], masks, 0.5, Budget("erk"))
    assert all(bool((new <= old).all()) for new, old in zip(masks.values, first))
    assert sum(masks.nonzero_counts()) == 12


def test_apportion_respects_bounds_and_the_total():
    assert apportion([2.5, 2.5], [0, 0], [5, 5], 5) == [3, 2]  # ties: the first layer
    assert apportion([1.0, 4.0], [3, 0], [5, 5], 5) == [3, 2]  # a layer never loses its zeros
    with pytest.raises(ConfigError):
        apportion([1.0, 1.0], [0, 0], [1, 1], 3)


def test_dense_layers_that_keep_more_than_the_target_are_refused():
    # 16 + 16 + 8: first and last dense keep 24 of 40, but sparsity 0.9 keeps 4
    with pytest.raises(ConfigError, match=r"budget.dense_first=True keeps 24 of 40 weights dense.*set it to false"):
        check([(4, 4), (4, 4), (2, 4)], 0.9, Budget("erk", dense_first=True, dense_last=True))
    with pytest.raises(ConfigError, match=r"budget.dense_last=True keeps 8 of 40"):
        check([(4, 4), (4, 4), (2, 4)], 0.9, Budget("erk", dense_last=True))
    check([(4, 4), (4, 4), (2, 4)], 0.5, Budget("erk", dense_last=True))  # keeps 20 >= 8: fine
    with pytest.raises(ConfigError, match="erk.*dense layers alone hold"):
        erk_densities([(4, 4), (2, 4)], 0.1, {0})


def test_an_unknown_budget_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"budget='ring' is not a budget \(one of global, uniform, erk\): e.g."):
        Budget("ring")
