"""The rules of derived runs on hand-made tensors: IMP's level counts and ladder, each control's mask."""
from __future__ import annotations

import math

import pytest
import torch

from flipout_repro.errors import ConfigError
from flipout_repro.methods.derived import IMP, Control
from flipout_repro.sparsity.budgets import Budget


def test_exact_levels_keep_round_0_8_to_the_l_of_the_weights():
    assert IMP().kept_counts(1000, 4) == [1000, 800, 640, 512, 410]  # 409.6 -> 410
    assert IMP(fraction=0.5).kept_counts(7, 3) == [7, 4, 2, 1]  # 3.5 -> 4 (round half to even: 4), 1.75, 0.875


def test_reference_levels_follow_open_lths_count_and_cut():
    # sparse_global: k = ceil(0.2 x the kept weights, the ignored layer's included), and the cut at rank k
    # removes k + 1. LeNet-300-100 at 28x28: 265,200 prunable outside the 1,000 of the output layer; the
    # counts OpenLTH's own prune function gives (run beside ours outside the project)
    assert IMP(count="reference").kept_counts(265_200, 3, excluded=1000) == [265_200, 211_959, 169_366, 135_291]
    # by hand, level 1: ceil(0.2 x 266,200) = 53,240, and one more
    assert 265_200 - 53_240 - 1 == 211_959


def test_the_ladder_passes_the_levels_and_ends_on_the_target():
    imp = IMP()
    # 1000 weights, 0 excluded: levels keep 800, 640, 512; the target 0.45 (450 zeros) ends the chain
    assert imp.ladder(1000, 0, 450) == [0, 200, 360, 450]
    # a target on a level is that level
    assert imp.ladder(1000, 0, 360) == [0, 200, 360]
    # with an excluded layer of 100: the 900 others keep 720, 576 (zeros counted over all 1000)
    assert imp.ladder(1000, 100, 330) == [0, 180, 324, 330]
    # two targets share the levels below them: what makes a sweep over sparsities reuse them
    assert imp.ladder(1000, 0, 600)[:4] == imp.ladder(1000, 0, 450)[:3] + [488]
    with pytest.raises(ValueError, match="do not fit"):
        imp.ladder(1000, 100, 901)


def test_imp_refuses_a_budget_that_is_not_one_ranking():
    with pytest.raises(ConfigError, match="budget"):
        IMP().use_budget(Budget("erk"))
    IMP().use_budget(Budget("global", dense_last=True))


def test_imp_keeps_the_state_its_next_level_rewinds_to():
    assert IMP(rewind="lottery").record_epochs() == [0]
    assert IMP(rewind="weights", rewind_epoch=3).record_epochs() == [3]
    assert IMP(rewind="lr").record_epochs() == []
    assert IMP(rewind="finetune").record_epochs() == []
    with pytest.raises(ValueError, match="rewind"):
        IMP(rewind="late")


PARENT = [torch.tensor([[1., 0., 1.], [0., 0., 1.]]), torch.tensor([1., 1., 0., 0.])]


def _gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_shuffle_keeps_each_layers_count_and_moves_the_kept_weights():
    moved = 0
    for seed in range(5):
        out = Control(kind="shuffle").start_mask(PARENT, _gen(seed))
        assert [int(m.sum()) for m in out] == [3, 2]
        assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in out)
        moved += sum(int((a != b).sum()) for a, b in zip(out, PARENT))
    assert moved > 0


def test_reinit_keeps_the_mask():
    out = Control(kind="reinit").start_mask(PARENT, _gen())
    assert all(torch.equal(a, b) for a, b in zip(out, PARENT))
    assert Control(kind="reinit").fresh_weights and not Control(kind="shuffle").fresh_weights


def test_random_budget_keeps_the_counts_only():
    out = Control(kind="random_budget").start_mask(PARENT, _gen(3))
    assert [int(m.sum()) for m in out] == [3, 2]
    assert Control(kind="random_budget").fresh_weights


def test_invert_keeps_each_layers_count_of_its_lowest_scores():
    scores = [torch.tensor([[6., 1., 5.], [2., 3., 4.]]), torch.tensor([9., 8., 1., 2.])]
    out = Control(kind="invert").start_mask(PARENT, _gen(), scores)
    # layer 0 keeps 3: its lowest scores are 1, 2, 3; layer 1 keeps 2: 1 and 2
    assert torch.equal(out[0], torch.tensor([[0., 1., 0.], [1., 1., 0.]]))
    assert torch.equal(out[1], torch.tensor([0., 0., 1., 1.]))


def test_a_control_kind_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Control(kind="swap")


def test_counts_are_exact_for_large_layers():
    big = [torch.zeros(1000)]
    big[0][:137] = 1
    for kind in ("shuffle", "random_budget"):
        assert int(Control(kind=kind).start_mask(big, _gen())[0].sum()) == 137
    assert math.isclose(float(IMP().kept_counts(10, 1)[1]), 8)
