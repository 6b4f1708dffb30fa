"""N:M patterns (pattern=nm): masks by hand, conv grouping, gradual counts, the checker, the 2:4 layout."""
import pytest
import torch
from torch import nn

from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.budgets import Budget
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.sparsity.patterns import (Pattern, check_config, check_layers, group_zeros, is_nm,
                                             semi_structured_padding, semi_structured_problem)

NM24 = Pattern("nm", 2, 4)
SCORES_2x8 = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4],
                           [4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0]])


def linear_masks(out: int, inp: int) -> Masks:
    return Masks.for_model(nn.Linear(inp, out, bias=False))


def test_2_4_keeps_the_two_highest_of_each_group_of_a_2x8_tensor():
    masks = linear_masks(2, 8)
    prune_to([SCORES_2x8], masks, 0.5, "global", pattern=NM24)
    assert masks.values[0].tolist() == [[0, 1, 1, 0, 1, 0, 1, 0],
                                        [1, 1, 0, 0, 0, 0, 1, 1]]
    assert is_nm(masks.values[0], 2, 4) and masks.sparsity() == 0.5


def test_gradual_events_raise_the_zeros_per_group_and_never_revive():
    masks = linear_masks(2, 8)
    prune_to([SCORES_2x8], masks, 0.25, "global", pattern=NM24)  # round(0.25 * 4) = 1 zero per group
    assert masks.values[0].tolist() == [[0, 1, 1, 1, 1, 0, 1, 1],
                                        [1, 1, 1, 0, 0, 1, 1, 1]]
    # the second event ranks the kept ones only: with reversed scores the pruned ones still count first
    prune_to([-SCORES_2x8], masks, 0.5, "global", pattern=NM24)
    assert masks.values[0].tolist() == [[0, 0, 1, 1, 0, 0, 1, 1],
                                        [0, 1, 1, 0, 0, 1, 1, 0]]


def test_group_zeros_rounds_to_the_nearest_and_stops_at_m_minus_n():
    # 2:4: s * 4 rounded half up, at most 2 zeros per group
    assert [group_zeros(s, 2, 4) for s in (0.0, 0.1, 0.125, 0.3, 0.375, 0.5, 0.9)] == [0, 0, 1, 1, 2, 2, 2]
    assert group_zeros(0.75, 1, 4) == 3 and group_zeros(0.6, 1, 8) == 5


def test_a_conv_groups_along_input_channels_at_each_kernel_position():
    conv = nn.Conv2d(4, 1, 2, bias=False)  # weight (out 1, in 4, 2, 2): one group of 4 channels per position
    masks = Masks.for_model(conv)
    # scores s[0, c, i, j]; at position (0, 0) the channels score [1, 8, 2, 7] -> channels 1 and 3 kept;
    # (0, 1): [3, 4, 6, 5] -> 2, 3; (1, 0): [9, 1, 1, 9] -> 0, 3; (1, 1): [5, 4, 0, 6] -> 0, 3
    per_position = {(0, 0): [1.0, 8.0, 2.0, 7.0], (0, 1): [3.0, 4.0, 6.0, 5.0],
                    (1, 0): [9.0, 1.0, 1.0, 9.0], (1, 1): [5.0, 4.0, 0.0, 6.0]}
    s = torch.zeros(1, 4, 2, 2)
    for (i, j), v in per_position.items():
        s[0, :, i, j] = torch.tensor(v)
    prune_to([s], masks, 0.5, "global", pattern=NM24)
    kept = {(i, j): masks.values[0][0, :, i, j].tolist() for (i, j) in per_position}
    assert kept == {(0, 0): [0, 1, 0, 1], (0, 1): [0, 0, 1, 1], (1, 0): [1, 0, 0, 1], (1, 1): [1, 0, 0, 1]}
    assert is_nm(masks.values[0], 2, 4)


def asp_m4n2_1d(weight):
    """NVIDIA ASP's 2:4 rule (apex/contrib/sparsity/sparse_masklib.py, create_mask with m4n2_1d), written
    here from its description: a conv weight (K, C, R, S) viewed as (R, S, K, C) rows of C, each group of 4
    consecutive entries keeps the valid 2-of-4 pattern with the largest sum of |w|."""
    k, c, r, s_ = weight.shape
    rows = weight.abs().permute(2, 3, 0, 1).reshape(-1, 4)
    patterns = torch.tensor([[1.0 if i in p else 0.0 for i in range(4)]
                             for p in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))])
    best = patterns[(rows @ patterns.T).argmax(1)]
    return best.reshape(r, s_, k, c).permute(2, 3, 0, 1)


def test_conv_mask_is_2_4_in_the_out_kh_kw_in_layout_and_equals_asps_rule():
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 64, 3, bias=False)  # the 64x32x3x3 weight
    masks = Masks.for_model(conv)
    prune_to([conv.weight.detach().abs()], masks, 0.5, "global", pattern=NM24)
    m = masks.values[0]
    channels_last = m.permute(0, 2, 3, 1).reshape(64, -1, 4)  # (out, kh, kw, in) in groups of 4 channels
    assert (channels_last.sum(-1) == 2).all()
    assert torch.equal(m, asp_m4n2_1d(conv.weight.detach()))
    # grouping torch's flattened (in, kh, kw) rows instead would not be 2:4 along the channels
    flat = torch.zeros_like(m).reshape(64, -1, 4)
    flat.scatter_(-1, conv.weight.detach().abs().reshape(64, -1, 4).topk(2, -1).indices, 1.0)
    flat = flat.reshape(m.shape)
    assert int((flat != m).sum()) > 0 and not (flat.permute(0, 2, 3, 1).reshape(64, -1, 4).sum(-1) <= 2).all()


def test_dense_layers_of_the_budget_stay_dense_under_nm():
    masks = Masks.for_model(nn.Sequential(nn.Linear(8, 4, bias=False), nn.Linear(4, 2, bias=False)))
    prune_to([torch.rand_like(m) for m in masks.values], masks, 0.5, Budget("uniform", dense_last=True), pattern=NM24)
    assert masks.nonzero_counts() == [16, 8] and is_nm(masks.values[0], 2, 4)


def test_the_checker():
    ok = torch.tensor([[1, 0, 0, 1, 0, 1, 1, 0]])
    assert is_nm(ok, 2, 4) and not is_nm(ok, 1, 4)
    assert not is_nm(torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]]), 2, 4)  # 3 kept in the first group
    assert not is_nm(torch.ones(2, 6), 2, 4)  # 6 columns: no whole groups of 4
    assert is_nm(torch.zeros(4, 4, 2, 2), 2, 4)  # a conv: groups of 4 input channels
    assert not is_nm(torch.zeros(4, 2, 2, 2), 2, 4)  # 2 input channels: no whole group of 4


@pytest.mark.parametrize("kind, n, m, budget, sparsity, key, fix", [
    ("nm", 5, 4, "global", 0.5, "pattern.n=5 must be in [1, 3]", "e.g. pattern.n=2"),
    ("nm", 0, 4, "global", 0.5, "pattern.n=0 must be in [1, 3]", "e.g. pattern.n=2"),
    ("nm", 2, 1, "global", 0.5, "pattern.m=1 must be >= 2", "e.g. pattern.m=4"),
    ("nm", "2", 4, "global", 0.5, "pattern.n='2' must be an integer", "e.g. pattern.n=2 pattern.m=4"),
    ("mesh", None, None, "global", 0.5, "pattern='mesh' is not a pattern", "e.g. pattern=nm"),
    ("unstructured", 2, None, "global", 0.5, "pattern.n=2 applies to pattern=nm only", "add pattern=nm"),
    ("nm", 2, 4, "global", 0.9, "sparsity=0.9 does not match pattern=nm with 2:4", "give sparsity=0.5"),
    ("nm", 2, 4, "erk", 0.5, "budget='erk' cannot apply to pattern=nm", "use budget=global or budget=uniform"),
])
def test_bad_pattern_values_are_refused_with_key_value_and_fix(kind, n, m, budget, sparsity, key, fix):
    with pytest.raises(ConfigError) as err:
        check_config(kind, n, m, budget, sparsity)
    assert key in str(err.value) and fix in str(err.value)


def test_a_layer_whose_input_channels_m_does_not_divide_is_refused_with_a_way_out():
    with pytest.raises(ConfigError, match=r"pattern.m=4 does not divide the input dimension 3 of c1.weight"
                                          r" \(8, 3, 3, 3\) \(its input channels, .*\): budget.dense_first=true"
                                          r" keeps it dense"):
        check_layers(["c1.weight", "fc.weight"], [(8, 3, 3, 3), (10, 8)], 4, set())
    check_layers(["c1.weight", "fc.weight"], [(8, 3, 3, 3), (10, 8)], 4, {0})  # kept dense: fine
    with pytest.raises(ConfigError, match="pick a pattern.m that divides 6"):
        check_layers(["a", "b", "c"], [(8, 4, 3, 3), (8, 6, 3, 3), (10, 8)], 4, set())
    with pytest.raises(ConfigError, match="pick a pattern.m that divides 300"):
        check_layers(["a", "b", "c"], [(300, 1024), (100, 300), (10, 100)], 8, set())


def test_the_2_4_layout_check_of_to_sparse_semi_structured():
    w = torch.zeros(32, 64)
    w[:, 0::4], w[:, 3::4] = 1.0, -2.0  # two of every four
    assert semi_structured_problem(w) is None and semi_structured_problem(w, torch.bfloat16) is None
    assert "float16 or bfloat16" in semi_structured_problem(w, torch.float32)
    dense = torch.ones(32, 64)
    assert "not 2:4" in semi_structured_problem(dense)
    assert "not a multiple of 4" in semi_structured_problem(torch.zeros(32, 6))
    # torch's CUTLASS kernels take rows x cols in multiples of 32 x 64 (fp16/bf16): zero rows/cols pad it
    assert semi_structured_padding((300, 1024)) == (320, 1024)
    assert semi_structured_padding((10, 100)) == (32, 128)
    assert semi_structured_padding((16, 4, 3, 3)) == (32, 64)  # a conv, as its (16, 3 x 3 x 4) GEMM rows
    conv = torch.zeros(16, 4, 3, 3)
    conv[:, 0], conv[:, 3] = 1.0, -1.0  # channels 0 and 3 of every group of 4: 2:4 in the channels-last rows
    assert semi_structured_problem(conv) is None
