"""Hoyer-Square: the penalty and its group variant by hand, the stop epoch, the hard threshold (paper
mode) against exact pruning to the target (target mode), and runs on the bundled subset."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from flipout_repro.sparsity.budgets import Budget
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.methods.hoyer_square import HoyerSquare, group_hoyer_square, group_scores, hoyer_square
from flipout_repro.run import run


def test_penalty_by_hand():
    # (|3| + |-4|)^2 / (9 + 16) = 49 / 25; (1 + 1 + 2)^2 / (1 + 1 + 4) = 16 / 6; an all-zero tensor adds 0
    got = hoyer_square([torch.tensor([3.0, -4.0]), torch.tensor([[1.0, -1.0], [0.0, 2.0]]), torch.zeros(3)])
    assert got.item() == pytest.approx(49 / 25 + 16 / 6)


def test_group_penalty_by_hand():
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    # rows (out): norms [5, 0] -> 25 / 25 = 1; columns (in): norms [3, 4] -> 49 / 25
    assert group_hoyer_square([w], "out").item() == pytest.approx(1.0)
    assert group_hoyer_square([w], "in").item() == pytest.approx(49 / 25)
    assert group_hoyer_square([w], "both").item() == pytest.approx(1 + 49 / 25)
    conv = torch.zeros(2, 3, 2, 2)
    conv[0, 1] = 1.0  # one filter with one non-zero channel of 4 ones: filter norms [2, 0], channel norms [0, 2, 0]
    assert group_hoyer_square([conv], "both").item() == pytest.approx(4 / 4 + 4 / 4)
    assert group_scores(w, "both").tolist() == [[3.0, 4.0], [0.0, 0.0]]
    w_zero = torch.zeros(2, 2, requires_grad=True)
    group_hoyer_square([w_zero], "both").backward()
    assert torch.isfinite(w_zero.grad).all()  # no NaN from the norm of an all-zero group


def bound(**kw):
    net = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1e-5, 0.5], [2e-4, -5e-5]]))
        net[0].bias.copy_(torch.tensor([1.0, -3.0]))
    masks = Masks.for_model(net)
    method = HoyerSquare(stop_epoch=350, stop_of=500, **kw)
    method.bind(net, masks)
    method.on_train_start(iter([]), 0.25, 10, 1)  # 350 of 500 -> epoch 7 of 10
    return net, masks, method


def end_epoch(method, masks, epoch):
    """What the loop does after an epoch: on_epoch_end, then the method's own prune through prune_to."""
    method.on_epoch_end(epoch)
    due = method.prune_due(epoch)
    if due is not None:
        prune_to(method.scores(method.model), masks, *due)
        method.after_prune()
    return due


def test_regulariser_covers_biases_and_stops_after_the_stop_epoch():
    net, masks, method = bound(lam=0.5)
    w = net[0].weight.detach()
    expected = 0.5 * (w.abs().sum() ** 2 / (w ** 2).sum() + 16 / 10)  # bias: (1 + 3)^2 / (1 + 9)
    assert method.regularizer(net).item() == pytest.approx(expected.item(), rel=1e-6)
    for epoch in range(1, 7):
        assert end_epoch(method, masks, epoch) is None
        assert method.regularizer(net) is not None and not masks.active
    assert end_epoch(method, masks, 7) is not None
    assert method.regularizer(net) is None and masks.active
    assert method.prune_due(8) is None


def test_paper_mode_hard_threshold_is_an_outcome():
    net, masks, method = bound(mode="paper", threshold=1e-4)
    assert method.sparsity_is_outcome
    assert end_epoch(method, masks, 7) == (0.5, "global")
    assert masks.values[0].tolist() == [[0.0, 1.0], [1.0, 0.0]]  # |w| < 1e-4 -> pruned: 50 %, not 25 %
    assert net[0].weight[0, 0].item() == 0.0 and net[0].bias.tolist() == [1.0, -3.0]


def test_target_mode_prunes_exactly_to_the_target():
    net, masks, method = bound(mode="target")
    assert not method.sparsity_is_outcome
    assert end_epoch(method, masks, 7) == (0.25, Budget("global"))
    assert masks.values[0].tolist() == [[0.0, 1.0], [1.0, 1.0]]  # the one smallest |w| of 4


def test_group_variant_prunes_whole_groups():
    net, masks, method = bound(group="out", params="prunable", threshold=1e-3)
    end_epoch(method, masks, 7)
    assert masks.values[0].tolist() == [[1.0, 1.0], [0.0, 0.0]]  # row norms 0.5 and 2.06e-4


@pytest.mark.parametrize("kwargs, key", [({"lam": -1}, "method.lam"), ({"stop_epoch": 600}, "method.stop_epoch"),
                                         ({"mode": "soft"}, "method.mode"), ({"group": "rows"}, "method.group"),
                                         ({"group": "out"}, "method.params")])
def test_bad_knobs(kwargs, key):
    with pytest.raises(ValueError, match=key):
        HoyerSquare(**kwargs)


def test_state_round_trip():
    _, _, method = bound()
    method.on_epoch_end(3)
    _, _, other = bound()
    other.load_state_dict(method.state_dict())
    assert (other._stop, other._epoch, other._target) == (7, 3, 0.25)


@pytest.mark.parametrize("overrides, outcome", [(["method=hoyer_square", "method.lam=3e-3"], True),
                                                (["method=hoyer_square", "method.mode=target"], False),
                                                (["method=group_hoyer_square", "method.lam=1e-2"], True)])
def test_runs_on_the_bundled_subset(quick_cfg, overrides, outcome):
    summary = run(quick_cfg(*overrides, "epochs=3"))  # stop epoch: 350/500 * 3 -> 2
    assert summary["sparsity_is_outcome"] is outcome and summary["config"]["schedule"]["name"] == "none"
    assert summary["target_sparsity"] == 0.99
    # the method's own prune goes through the loop's prune path: a prune record and a curve point
    records = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    [prune] = [r for r in records if r["type"] == "prune"]
    assert prune["epoch"] == 2 and prune["sparsity"] == pytest.approx(summary["achieved_sparsity"])
    assert [p["epoch"] for p in summary["curve"]] == [2, 3]
    if outcome:
        assert 0 <= summary["achieved_sparsity"] < 0.99
    else:
        assert summary["achieved_sparsity"] == pytest.approx(0.99, abs=1 / summary["prunable"])
