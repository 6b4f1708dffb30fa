"""STR: the forward equals sign(w) relu(|w| - sigmoid(s)), s learns, weights under the threshold come back
when it drops, the last epoch bakes the thresholded weights in, and a run on the bundled subset."""
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.methods.str import STR, soft_threshold
from flipout_repro.analysis.finished_run import load_run
from flipout_repro.run import run

W = [[0.5, -0.1], [-0.9, 0.05]]


def bound(s_init=0.0, **kw):
    net = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W))
    masks = Masks.for_model(net)
    method = STR(s_init=s_init, **kw)
    method.bind(net, masks)
    method.on_train_start(iter([]), 0.9, 3, 1)
    return net, masks, method


def test_forward_is_the_soft_threshold_by_hand():
    net, masks, method = bound(s_init=math.log(0.2 / 0.8))  # sigmoid(s) = 0.2
    expected = torch.tensor([[0.3, 0.0], [-0.7, 0.0]])  # sign(w) * relu(|w| - 0.2)
    assert torch.allclose(net[0].weight, expected)
    assert torch.allclose(soft_threshold(torch.tensor(W), torch.tensor(math.log(0.25))), expected)
    x = torch.tensor([[1.0, 2.0]])
    assert torch.allclose(net(x), x @ expected.T)
    assert masks.params[0] is net[0].parametrizations.weight.original  # masks and optimizer hold raw W


def test_threshold_and_weights_get_gradients():
    net, masks, method = bound(s_init=0.0)  # sigmoid(0) = 0.5: only |w| = 0.9 survives
    net(torch.tensor([[1.0, 1.0]])).sum().backward()
    # d/ds of sum(W_hat x) = -sign(w) sigmoid'(s) summed over surviving weights: -(-1) * 0.25 * 1
    assert method.parts[0].s.grad.item() == pytest.approx(0.25)
    assert masks.params[0].grad.tolist() == [[0.0, 0.0], [1.0, 0.0]]  # zero below the threshold
    assert {n for n, _ in net.named_parameters()} >= {"0.parametrizations.weight.0.s"}  # s is trained


def test_sparsity_is_reported_without_masking_and_weights_can_come_back():
    net, masks, method = bound(s_init=math.log(0.2 / 0.8))
    method.on_epoch_end(1)
    assert masks.values[0].tolist() == [[1.0, 0.0], [1.0, 0.0]] and not masks.active
    with torch.no_grad():
        method.parts[0].s.fill_(math.log(0.01 / 0.99))  # the threshold drops to 0.01
    method.on_epoch_end(2)
    assert masks.values[0].tolist() == [[1.0, 1.0], [1.0, 1.0]]  # -0.1 and 0.05 are back


def test_last_epoch_bakes_the_thresholded_weights():
    net, masks, method = bound(s_init=math.log(0.2 / 0.8))
    x = torch.tensor([[1.0, 2.0]])
    before = net(x).detach()
    method.on_epoch_end(3)
    due = method.prune_due(3)  # the loop prunes through prune_to, then after_prune bakes
    assert due == (0.5, "global")
    prune_to(method.scores(net), masks, *due)
    method.after_prune()
    assert method.prune_due(3) is None
    raw = masks.params[0].detach()
    assert torch.allclose(raw, torch.tensor([[0.3, 0.0], [-0.7, 0.0]]))  # the saved weights are W_hat
    assert torch.allclose(net(x), before) and masks.active and masks.sparsity() == 0.5
    assert list(net.state_dict()) == ["0.weight"]  # a plain model again: any tool can load it
    plain = nn.Sequential(nn.Linear(2, 2, bias=False))
    plain.load_state_dict(net.state_dict())
    assert torch.allclose(plain(x), before)
    state = method.state_dict()
    assert state == {"epochs": 3, "baked": True}
    # resuming from a checkpoint written after the bake: a freshly bound model loads the plain weights
    net2, masks2, other = bound()
    net2.load_state_dict(net.state_dict())
    other.load_state_dict(state)
    assert other.parts[0].baked and masks2.params[0] is net2[0].weight
    assert torch.allclose(net2(x), before)


def test_own_weight_decay_on_s():
    net, masks, method = bound(s_init=-2.0, s_weight_decay=0.1, optim_weight_decay=0.0005)
    method.parts[0].s.grad = torch.tensor(0.0)
    method.after_backward(net)
    assert method.parts[0].s.grad.item() == pytest.approx((0.1 - 0.0005) * -2.0)
    with pytest.raises(ValueError, match="method.s_weight_decay"):
        STR(s_weight_decay=-1.0)


def test_str_runs_and_reports_its_sparsity_as_an_outcome(quick_cfg):
    summary = run(quick_cfg("method=str", "method.s_init=-4", "epochs=2"))
    assert summary["sparsity_is_outcome"] and summary["target_sparsity"] == 0.99
    assert 0 < summary["achieved_sparsity"] < 0.99 and summary["config"]["schedule"]["name"] == "none"
    records = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    [prune] = [r for r in records if r["type"] == "prune"]  # the bake is recorded as the loop's prune
    assert prune["epoch"] == 2 and prune["sparsity"] == pytest.approx(summary["achieved_sparsity"])
    assert summary["nonzero"] == summary["prunable"] - round(summary["achieved_sparsity"] * summary["prunable"])
    loaded = load_run(summary["run_dir"], with_data=False)  # the saved model is a plain, thresholded one
    assert loaded.masks.sparsity() == pytest.approx(summary["achieved_sparsity"])
    assert all(int((w != 0).sum()) == int(m.sum()) for w, m in zip(loaded.masks.params, loaded.masks.values))


def test_default_s_init_starts_dense_and_weight_decay_alone_moves_s():
    """s_init = -3200 (STR's resnet50-str.yaml:30): sigmoid(s) is exactly 0 in fp32, W_hat = W bit for bit,
    sigmoid'(s) = 0, so one SGD step moves s by the coupled weight decay only: s (1 - lr wd)."""
    assert STR().s_init == -3200.0
    net, masks, method = bound(s_init=STR().s_init)
    assert torch.equal(net[0].weight, torch.tensor(W))  # dense: nothing under the threshold
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    net(torch.tensor([[1.0, 2.0]])).sum().backward()
    assert method.parts[0].s.grad.item() == 0.0
    opt.step()
    assert method.parts[0].s.item() == pytest.approx(-3200 * (1 - 0.1 * 5e-4), rel=1e-7)
    method.on_epoch_end(1)
    assert masks.values[0].all()


def test_the_default_s_init_and_s_init_minus_5_are_different_protocols():
    from helpers import make_cfg
    from flipout_repro.rundir import config_hash

    old = make_cfg("method=str", "method.s_init=-5.0", "epochs=400", "sparsity=0.75")
    assert config_hash(old) == "5536f6f9"  # the folder of an STR run with s_init=-5
    assert config_hash(make_cfg("method=str", "epochs=400", "sparsity=0.75")) != "5536f6f9"
