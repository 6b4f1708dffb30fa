"""WeightMom (our reading of the abstract): the moving average of |w| and the per-layer importance from
relative sparsity, by hand; and a run with the cubic schedule its yaml selects."""
import pytest
import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.methods.weightmom import WeightMom
from flipout_repro.run import run


def bound(**kw):
    net = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[2.0, -1.0]]))
        net[1].weight.copy_(torch.tensor([[0.5], [-4.0]]))
    masks = Masks.for_model(net)
    method = WeightMom(**kw)
    method.bind(net, masks)
    method.on_train_start(iter([]), 0.5, 10, 4)
    return net, masks, method


def test_moving_average_of_magnitudes_by_hand():
    net, masks, method = bound(horizon_epochs=1.0)  # 4 steps per epoch -> beta = 1 - 1/4
    assert method.beta == pytest.approx(0.75)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 3.0]]))
    method.after_step(net)
    # 0.75 * |[2, -1]| + 0.25 * |[1, 3]|
    assert method.avg[0].flatten().tolist() == pytest.approx([1.75, 1.5])
    assert method.avg[1].flatten().tolist() == pytest.approx([0.5, 4.0])


def test_update_every_skips_steps():
    net, masks, method = bound(horizon_epochs=1.0, update_every=2)  # beta = 1 - 2/4
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[4.0, 3.0]]))
    method.after_step(net)
    assert method.avg[0].tolist() == [[2.0, 1.0]]
    method.after_step(net)
    assert method.avg[0].flatten().tolist() == pytest.approx([3.0, 2.0])


def test_importance_from_relative_sparsity_by_hand():
    net, masks, method = bound(layer_importance=1.0)
    assert [i.item() for i in method.importance()] == [1.0, 1.0]  # dense: no layer is favoured
    prune_to([torch.tensor([[1.0, 0.0]]), torch.ones(2, 1)], masks, 0.25)  # layer 0: 1 of 2 kept
    method.after_prune()
    # network density 3/4; layer 0 density 1/2 -> I = 1.5; layer 1 density 1 -> I = 0.75
    assert [i.item() for i in method.importance()] == pytest.approx([1.5, 0.75])
    scores = method.scores(net)
    assert scores[0].flatten().tolist() == pytest.approx([3.0, 0.0])
    assert scores[1].flatten().tolist() == pytest.approx([0.375, 3.0])
    half = WeightMom(layer_importance=0.5)
    half.bind(net, masks)
    assert [i.item() for i in half.importance()] == pytest.approx([1.5 ** 0.5, 0.75 ** 0.5])


def test_state_round_trip_and_bad_knobs():
    net, masks, method = bound()
    method.after_step(net)
    _, _, other = bound()
    other.load_state_dict(method.state_dict())
    assert other.beta == method.beta and other._steps == 1
    for kwargs, key in (({"horizon_epochs": 0}, "method.horizon_epochs"),
                        ({"layer_importance": -1}, "method.layer_importance"),
                        ({"update_every": 0}, "method.update_every")):
        with pytest.raises(ValueError, match=key):
            WeightMom(**kwargs)


def test_weightmom_runs_with_the_cubic_schedule(quick_cfg):
    summary = run(quick_cfg("method=weightmom", "epochs=4"))
    assert summary["config"]["schedule"]["name"] == "cubic"
    assert summary["achieved_sparsity"] == pytest.approx(0.99, abs=1 / summary["prunable"])
