"""The learning-rate schedule: STR's cosine and warm-up by hand, the step schedule as torch's MultiStepLR, and the
scheduler's state through a weights-only checkpoint."""
import io
import math

import pytest
import torch

from helpers import make_cfg
from flipout_repro.training.build import build_optimizer
from flipout_repro.training.lr_schedule import lr_factor, make_scheduler


def rates(schedule, warmup, epochs, milestones=(), gamma=0.1, lr=1.0):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make_scheduler(opt, schedule, warmup, epochs, milestones, gamma)
    out = []
    for _ in range(epochs):  # the loop: train an epoch at the current rate, then step once
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, sched


def test_cosine_with_warm_up_by_hand():
    # E = 10, W = 2: warm-up (e+1)/W, then 0.5 (1 + cos(pi (e - 2) / 8)) as STR's cosine_lr
    got, _ = rates("cosine", 2, 10)
    c = [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert got == pytest.approx([0.5, 1.0] + c, abs=1e-15)
    assert got[2] == 1.0 and got[6] == pytest.approx(0.5) and got[9] == pytest.approx(0.0380602337, abs=1e-9)


def test_cosine_without_warm_up_ends_above_zero():
    got, _ = rates("cosine", 0, 4)
    assert got == pytest.approx([1.0, 0.8535533906, 0.5, 0.1464466094])


def test_step_without_warm_up_is_still_torchs_multisteplr_bit_for_bit():
    got, sched = rates("step", 0, 8, milestones=[3, 6], gamma=0.1, lr=0.1)
    assert type(sched) is torch.optim.lr_scheduler.MultiStepLR
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    old = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 6], gamma=0.1)  # torch's own scheduler
    expected = []
    for _ in range(8):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        old.step()
    assert got == expected  # exact equality, not approx
    cfg = make_cfg("epochs=350")
    _, built = build_optimizer(cfg, torch.nn.Linear(2, 2))
    assert type(built) is torch.optim.lr_scheduler.MultiStepLR and sorted(built.milestones) == [150, 250]


def test_warm_up_then_step_counts_milestones_from_epoch_zero():
    got, _ = rates("step", 2, 6, milestones=[4], gamma=0.5)
    assert got == [0.5, 1.0, 1.0, 1.0, 0.5, 0.5]
    assert lr_factor(4, "step", 0, 6, [4, 4], 0.5) == 0.25  # a repeated milestone counts twice, as MultiStepLR


def test_built_from_the_config():
    cfg = make_cfg("epochs=10", "optim.schedule=cosine", "optim.warmup_epochs=2", "optim.lr=0.4")
    opt, sched = build_optimizer(cfg, torch.nn.Linear(2, 2))
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR) and opt.param_groups[0]["lr"] == 0.2


def test_state_survives_a_weights_only_checkpoint():
    _, sched = rates("cosine", 2, 5)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    fresh = make_scheduler(opt, "cosine", 2, 5, [], 0.1)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 5


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="optim.schedule='linear' is not a schedule"):
        lr_factor(3, "linear", 0, 10, [], 0.1)
