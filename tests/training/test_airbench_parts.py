"""The pieces of the airbench protocol, each against a hand computation: the triangle lr schedule, the
BatchNorm parameter group, Lookahead with masks, the summed loss and test-time augmentation."""
import pytest
import torch
from torch import nn

from helpers import make_cfg
from flipout_repro.models.airbench import AirbenchNet
from flipout_repro.sparsity.masking import Masks
from flipout_repro.training.build import build_optimizer
from flipout_repro.training.evaluate import tta_logits
from flipout_repro.training.lookahead import Lookahead
from flipout_repro.training.lr_schedule import triangle_factor


def test_triangle_is_the_sources_per_step_factor():
    # 476 steps (the source's 9.9 epochs of 48): int(476 * 0.23) = 109 warm-up steps
    assert triangle_factor(0, 476) == pytest.approx(0.2)
    assert triangle_factor(54, 476) == pytest.approx(0.2 + 0.8 * 54 / 109)
    assert triangle_factor(109, 476) == pytest.approx(1.0)
    assert triangle_factor(475, 476) == pytest.approx(1.0 - 0.93 * 366 / 367)
    assert triangle_factor(476, 476) == pytest.approx(0.07)


def test_triangle_steps_every_step_over_the_whole_run():
    cfg = make_cfg("experiment=airbench94", "epochs=2")
    model = nn.Linear(2, 2)
    opt, sched = build_optimizer(cfg, model, steps_per_epoch=5)  # 10 steps, int(2.3) = 2 warm-up steps
    base = cfg.optim.lr
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[-1]["lr"])
        opt.step()
        sched.step()
    expect = [base * f for f in (0.2, 0.6, 1.0)] + [base * (1 - 0.93 * k / 8) for k in range(1, 8)]
    assert seen == pytest.approx(expect)
    assert getattr(sched, "per_step", False)


def test_batchnorm_biases_are_their_own_group():
    cfg = make_cfg("experiment=airbench94")
    model = AirbenchNet(3, 10, 32, widths=(8, 8, 8))
    opt, _ = build_optimizer(cfg, model, 48)
    norm, other = opt.param_groups
    biases = [m.bias for g in model.groups for m in (g.norm1, g.norm2)]
    assert [id(p) for p in norm["params"]] == [id(p) for p in biases]  # BN weights are frozen: left out
    # the base rates (the schedule's first step trains at 0.2 of them)
    assert norm["initial_lr"] == pytest.approx(0.09375) and norm["lr"] == pytest.approx(0.2 * 0.09375)
    assert norm["weight_decay"] == pytest.approx(0.0212870, rel=1e-5)
    assert other["initial_lr"] == pytest.approx(1.46484375e-3) and other["weight_decay"] == pytest.approx(1.3623652)
    # the same decay per step for both groups (legacy/airbench94.py:361-362, 377-378)
    assert norm["lr"] * norm["weight_decay"] == pytest.approx(other["lr"] * other["weight_decay"])
    assert id(model.whiten.bias) in {id(p) for p in other["params"]}
    assert opt.defaults["momentum"] == 0.85 and opt.defaults["nesterov"]


def test_lookahead_by_hand_and_masked():
    lin = nn.Linear(2, 1, bias=False)
    masks = Masks.for_model(lin)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
    la = Lookahead(lin, masks, every=5, steps=20)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 6.0]]))
    la.after_step(4)  # not a multiple of 5: nothing
    assert torch.equal(lin.weight.detach(), torch.tensor([[3.0, 6.0]]))
    d = 0.95 ** 5 * (5 / 20) ** 3
    la.after_step(5)
    slow = torch.tensor([[d * 1 + (1 - d) * 3, d * 2 + (1 - d) * 6]])
    assert torch.allclose(lin.weight.detach(), slow) and torch.allclose(la.slow["weight"], slow)
    # a pruned weight: the slow copy is masked too, so it does not come back
    masks.values[0][0, 1] = 0
    masks.apply_to_weights()
    with torch.no_grad():
        lin.weight.add_(1.0)
    la.after_step(10)
    d = 0.95 ** 5 * (10 / 20) ** 3
    assert lin.weight[0, 1].item() == 0 and la.slow["weight"][0, 1].item() == 0
    assert lin.weight[0, 0].item() == pytest.approx(d * slow[0, 0].item() + (1 - d) * (slow[0, 0].item() + 1))
    # the last step, not a multiple of 5: the live weights become the slow copy
    with torch.no_grad():
        lin.weight.add_(5.0)
    before = la.slow["weight"].clone()
    la2 = Lookahead(lin, masks, every=5, steps=12)
    la2.slow["weight"].copy_(before)
    la2.after_step(12)
    assert torch.equal(lin.weight.detach(), before)


def test_test_time_views_by_hand():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    w = torch.randn(16, 3)

    def f(v):
        return v.flatten(1) @ w

    mirror = lambda v: 0.5 * f(v) + 0.5 * f(v.flip(-1))  # noqa: E731
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :4, :4], padded[..., 2:, 2:]
    assert torch.equal(tta_logits(f, x, 0), f(x))
    assert torch.allclose(tta_logits(f, x, 1), mirror(x))
    expect = 0.25 * (f(x) + f(x.flip(-1))) + 0.125 * (f(up_left) + f(up_left.flip(-1)) + f(down_right)
                                                     + f(down_right.flip(-1)))
    assert torch.allclose(tta_logits(f, x, 2), expect, atol=1e-4)
    assert up_left[0, 0, 1, 1] == x[0, 0, 0, 0] and down_right[0, 0, 0, 0] == x[0, 0, 1, 1]


def test_lookahead_weights_are_the_sources_float32_table():
    lin = nn.Linear(2, 1, bias=False)
    la = Lookahead(lin, Masks.for_model(lin), every=5, steps=476)
    table = 0.95 ** 5 * (torch.arange(477) / 476) ** 3  # legacy/airbench94.py:392, a float32 tensor
    assert all(la.decay(s) == table[s].item() for s in range(477))
    assert la.decay(476) == pytest.approx(0.7738, abs=1e-4) and la.decay(5) == pytest.approx(9.0e-7, rel=0.01)
