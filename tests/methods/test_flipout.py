"""FlipOut's rule on hand-computed tensors: flip counting, the score, global ranking, the noise scale;
and masks that survive momentum and weight decay in the real training loop."""
import math

import pytest
import torch
from torch import nn

from flipout_repro.data import TensorData
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.methods.flipout import FlipOut
from flipout_repro.methods.magnitude import Magnitude
from flipout_repro.methods.noise import add_gradient_noise
from flipout_repro.sparsity.schedule import PruneEvent
from flipout_repro.training.trainer import Trainer, TrainState


def set_weights(net, *weights):
    with torch.no_grad():
        for layer, w in zip([m for m in net if isinstance(m, nn.Linear)], weights):
            layer.weight.copy_(torch.tensor(w))


def bound_flipout(net, **kw):
    masks = Masks.for_model(net)
    method = FlipOut(**kw)
    method.bind(net, masks)
    return method, masks


def test_flip_counting_and_score_by_hand():
    net = nn.Sequential(nn.Linear(2, 2, bias=False))
    set_weights(net, [[1.0, -1.0], [0.5, -0.5]])
    method, masks = bound_flipout(net)
    set_weights(net, [[-1.0, -1.0], [0.5, 0.5]])  # flips at (0,0) and (1,1)
    method.after_step(net)
    set_weights(net, [[1.0, -1.0], [0.5, 0.5]])  # flips back at (0,0)
    method.after_step(net)
    assert method.counters[0].tolist() == [[2, 0], [0, 1]]
    # |w|^2 / (c + 1)
    expected = torch.tensor([[1 / 3, 1.0], [0.25, 0.25 / 2]])
    assert torch.allclose(method.scores(net)[0], expected)


def test_sign_of_zero_is_zero_and_pruned_counters_stay_zero():
    net = nn.Sequential(nn.Linear(2, 1, bias=False))
    set_weights(net, [[1.0, 0.0]])
    method, masks = bound_flipout(net)
    set_weights(net, [[1.0, 2.0]])  # 0 -> + counts as a flip (sign 0 != sign +)
    method.after_step(net)
    assert method.counters[0].tolist() == [[0, 1]]
    prune_to([torch.tensor([[0.0, 1.0]])], masks, 0.5)  # prune the first weight
    method.after_prune()
    set_weights(net, [[-3.0, -2.0]])  # the optimizer moved a pruned weight (momentum) ...
    masks.apply_to_weights()  # ... and the loop masks it back before after_step, as every step does
    method.after_step(net)
    assert method.counters[0].tolist() == [[0, 2]]


def test_global_ranking_across_layers_uses_flips():
    net = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 2, bias=False))
    set_weights(net, [[2.0, 1.5]], [[1.0], [3.0]])
    method, masks = bound_flipout(net)
    method.counters[0].copy_(torch.tensor([[15.0, 0.0]]))
    method.counters[1].copy_(torch.tensor([[0.0], [2.0]]))
    # scores: [[4/16, 2.25]], [[1], [9/3]] -> the two lowest are 0.25 (layer 0) and 1 (layer 1)
    assert [s.tolist() for s in method.scores(net)] == [[[0.25, 2.25]], [[1.0], [3.0]]]
    prune_to(method.scores(net), masks, 0.5, method.budget)
    assert masks.values[0].tolist() == [[0, 1]] and masks.values[1].tolist() == [[0], [1]]
    # magnitude alone would have kept the largest weight (2.0) and pruned 1.5 instead
    net2 = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 2, bias=False))
    set_weights(net2, [[2.0, 1.5]], [[1.0], [3.0]])
    mag, mag_masks = Magnitude(), Masks.for_model(net2)
    mag.bind(net2, mag_masks)
    prune_to(mag.scores(net2), mag_masks, 0.5, mag.budget)
    assert mag_masks.values[0].tolist() == [[1, 0]] and mag_masks.values[1].tolist() == [[0], [1]]


def test_noise_scale_is_the_gradient_rms():
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, -4.0, 0.0, 0.0])  # ||g|| = 5, sqrt(n) = 2 -> RMS 2.5
    torch.manual_seed(0)
    draw = torch.randn(4)
    torch.manual_seed(0)
    add_gradient_noise([p], scale=2.0)
    assert torch.allclose(p.grad, torch.tensor([3.0, -4.0, 0.0, 0.0]) + 2.0 * 2.5 * draw)
    q = nn.Parameter(torch.zeros(3))
    q.grad = torch.ones(3)
    add_gradient_noise([q], scale=0.0)
    assert q.grad.tolist() == [1.0, 1.0, 1.0]


def test_noise_statistics_and_every_parameter_gets_it():
    net = nn.Sequential(nn.Linear(50, 40), nn.BatchNorm1d(40))
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.1)
    method, _ = bound_flipout(net, noise=1.0)
    torch.manual_seed(1)
    method.after_backward(net)
    noise = net[0].weight.grad - 0.1
    assert noise.std().item() == pytest.approx(0.1, rel=0.05)  # RMS of a constant 0.1 grad
    for p in (net[0].bias, net[1].weight, net[1].bias):
        assert not torch.equal(p.grad, torch.full_like(p, 0.1))


def tiny_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    mean, std = torch.tensor([0.5]).view(1, 1, 1, 1), torch.tensor([0.5]).view(1, 1, 1, 1)
    return TensorData(x, y, x[:16], y[:16], mean, std)


def test_pruned_weights_stay_exactly_zero_through_momentum_and_weight_decay():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 20), nn.ReLU(), nn.Linear(20, 3))
    masks = Masks.for_model(net)
    method = FlipOut(noise=1.0)
    method.bind(net, masks)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [100])
    data = tiny_data()
    spe = data.steps_per_epoch(16)
    events = [PruneEvent(step=1 * spe, sparsity=0.5), PruneEvent(step=2 * spe + 2, sparsity=0.9)]
    trainer = Trainer(net, data, method, masks, opt, sched, events, epochs=4, target=0.9, batch_size=16,
                      eval_batch_size=64, generator=torch.Generator().manual_seed(0), progress=False)
    state = trainer.run(TrainState())
    assert state.events_done == 2 and state.step == 4 * spe
    for p, m in zip(masks.params, masks.values):
        assert torch.all(p[m == 0] == 0)
        buf = opt.state[p]["momentum_buffer"]
        assert buf[m == 0].abs().sum() > 0  # momentum alone would have moved them
    assert masks.total() - sum(masks.nonzero_counts()) == round(0.9 * masks.total())
    # the end-of-epoch event recorded the accuracy before it; the mid-epoch one did not
    assert len(state.curve) == 1 and state.curve[0]["epoch"] == 1 and state.curve[0]["sparsity"] == 0.0
    assert all(math.isfinite(v) for v in method.epoch_stats().values())


@pytest.mark.parametrize("path", ["cpu_inplace", "foreach", "compiled"])
def test_every_counting_path_gives_the_same_counts(path):
    def run(path):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(20, 10), nn.Linear(10, 3))
        method, masks = bound_flipout(net)
        method._on_cpu = path == "cpu_inplace"
        if method._on_cpu:
            method._spare = [torch.empty_like(s) for s in method.signs]
            method._flags = [torch.empty_like(s, dtype=torch.bool) for s in method.signs]
        if path == "compiled":
            method.compile_hooks()
        prune_to([torch.rand_like(m) for m in masks.values], masks, 0.5)
        method.after_prune()
        g = torch.Generator().manual_seed(1)
        for _ in range(6):
            with torch.no_grad():
                for p in masks.params:
                    p.add_(torch.randn(p.shape, generator=g))
            masks.apply_to_weights()
            method.after_step(net)
        return [c.clone() for c in method.counters]

    reference = run("cpu_inplace") if path != "cpu_inplace" else run("foreach")
    got = run(path)
    assert all(torch.equal(a, b) for a, b in zip(got, reference))
    assert sum(float(c.sum()) for c in got) > 0


@pytest.mark.parametrize("flat", [False, True], ids=["cpu_buffers", "one_draw"])
def test_planned_noise_has_the_same_scale_per_parameter(flat):
    from flipout_repro.methods.noise import noise_plan

    params = [nn.Parameter(torch.zeros(400)), nn.Parameter(torch.zeros(30, 30))]
    params[0].grad = torch.full((400,), 2.0)  # RMS 2
    params[1].grad = torch.full((30, 30), 0.5)  # RMS 0.5
    torch.manual_seed(3)
    add_gradient_noise(params, 1.0, noise_plan(params, flat=flat))
    assert (params[0].grad - 2.0).std().item() == pytest.approx(2.0, rel=0.1)
    assert (params[1].grad - 0.5).std().item() == pytest.approx(0.5, rel=0.1)


def test_one_draw_noise_copies_nothing_from_the_host_per_step(monkeypatch):
    """The GPU path, run on a CPU: with its plan built once, a step makes no torch.tensor from Python
    values (on a GPU that is a host-to-device copy that waits for the backward pass), and it draws the
    same noise as the unplanned call."""
    from flipout_repro.methods import noise as noise_mod

    def grads():
        g = torch.Generator().manual_seed(0)
        ps = [nn.Parameter(torch.zeros(5, 3)), nn.Parameter(torch.zeros(7)), nn.Parameter(torch.zeros(()))]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        return ps

    planned, unplanned = grads(), grads()
    plan = noise_mod.noise_plan(planned, flat=True)
    real_tensor = torch.tensor
    monkeypatch.setattr(noise_mod.torch, "tensor", lambda *a, **k: pytest.fail("host copy in a step"))
    torch.manual_seed(5)
    noise_mod.add_gradient_noise(planned, 0.5, plan)
    monkeypatch.setattr(noise_mod.torch, "tensor", real_tensor)
    torch.manual_seed(5)
    noise_mod.add_gradient_noise(unplanned, 0.5)
    for a, b in zip(planned, unplanned):
        assert torch.allclose(a.grad, b.grad, rtol=1e-6, atol=1e-7)
    assert not torch.equal(planned[0].grad, grads()[0].grad)  # noise was added
