"""SET and RigL: one update each on a toy layer through the loop's step (which weights drop, which grow,
exact counts, momentum reset, whether the optimizer step runs), the cosine drop fraction and the update
steps by hand, the ever-active share, and every bad value of the knobs."""
import math

import pytest
import torch
from torch import nn

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.masking import Masks
from flipout_repro.methods.dynamic import SET, RigL
from flipout_repro.training.trainer import Trainer

X = torch.tensor([[1.0, 2.0, 0.0]])
Y = torch.tensor([2])


def toy(method, lr=0.1, momentum=0.9):
    """Linear(3, 3) with only column 2 active (0.5, -3, 1): with x = [1, 2, 0] the logits are 0, so the
    softmax is 1/3 each and the gradient is (1/3, 1/3, -2/3) x (1, 2, 0) (y = 2)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, -3.0], [0.0, 0.0, 1.0]]))
    masks = Masks.for_model(net)
    masks.values[0].copy_(torch.tensor([[0.0, 0.0, 1.0]] * 3))
    masks.active = True
    method.bind(net, masks)
    method.on_train_start(iter([]), 2 / 3, 10, 100)  # T_end = floor(stop * 1000)
    method.after_prune()  # the initial mask, as after the event at step 0
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    opt.state[net[0].weight]["momentum_buffer"] = torch.ones(3, 3)
    trainer = Trainer(net, None, method, masks, opt, None, [], 10, 2 / 3, 1, 1, torch.Generator(), progress=False)
    trainer._at = 0  # the first step of the run: an update is due
    return net, masks, opt, trainer


GRAD = torch.tensor([[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.0], [-2 / 3, -4 / 3, 0.0]])


def test_one_rigl_update_by_hand():
    # drop fraction 0.5 at step 0: floor(0.5 x 3) = 1 weight out, 1 in
    net, masks, opt, trainer = toy(RigL(drop_fraction=0.5))
    trainer.step(X, Y)
    # drop: |w| = 0.5 at (0, 2); grow: the largest |g| among the rest, 4/3 at (2, 1)
    assert masks.values[0].tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert masks.nonzero_counts() == [3]
    # the update replaced the optimizer step: kept weights unchanged, the grown one at 0
    assert net[0].weight.tolist() == [[0, 0, 0], [0, 0, -3.0], [0, 0, 1.0]]
    buf = opt.state[net[0].weight]["momentum_buffer"]
    assert buf.tolist() == [[1, 1, 1], [1, 1, 1], [1, 0, 1]]  # untouched but for the grown weight's
    rec = trainer._mask_record
    assert rec["type"] == "mask_update" and rec["step"] == 1 and rec["dropped"] == rec["grown"] == rec["new"] == 1
    assert rec["drop_fraction"] == pytest.approx(0.5)
    assert net[0].weight.grad.allclose(GRAD)  # the dense gradient the growth was ranked by


def test_one_set_update_by_hand():
    net, masks, opt, trainer = toy(SET(drop_fraction=0.5), lr=0.0)  # lr 0: the step moves no weight
    torch.manual_seed(1)
    expected_rand = torch.rand(3, 3)
    torch.manual_seed(1)
    trainer.step(X, Y)
    # drop (0, 2) (|w| 0.5); grow the largest uniform score among the other 7 entries (the dropped one too)
    candidates = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    grown = int(torch.where(candidates, expected_rand, torch.tensor(-1.0)).flatten().argmax())
    mask = [[0.0, 0, 0], [0, 0, 1], [0, 0, 1]]
    mask[grown // 3][grown % 3] = 1.0
    assert masks.values[0].tolist() == mask and masks.nonzero_counts() == [3]
    # SET applies the optimizer step first (buf = 0.9 x 1 + g everywhere), then zeroes the grown weight's
    expected = 0.9 + GRAD
    if grown != 2:  # (0, 2), just dropped, would keep its momentum
        expected[grown // 3, grown % 3] = 0.0
    assert torch.allclose(opt.state[net[0].weight]["momentum_buffer"], expected)
    assert net[0].weight[grown // 3, grown % 3] == 0 or grown == 2


def test_no_update_off_the_interval_after_stop_or_before_the_first_prune():
    net, masks, opt, trainer = toy(RigL(drop_fraction=0.5, update_every=100))
    trainer._at = 50
    before = masks.values[0].clone()
    trainer.step(X, Y)
    assert torch.equal(masks.values[0], before) and trainer._mask_record is None
    assert net[0].weight[1, 2] != -3.0  # an ordinary step: the weights moved
    m = RigL(update_every=100, stop=0.75)
    toy(m)
    assert [s for s in range(0, 1000) if m.due(s)] == list(range(0, 751, 100))  # T_end = 750, inclusive
    m.masks.active = False
    assert not m.due(0)


def test_cosine_drop_fraction_by_hand():
    m = RigL(drop_fraction=0.3, stop=0.75)
    toy(m)
    assert m.end_step == 750
    assert m.drop_fraction_at(0) == pytest.approx(0.3)
    assert m.drop_fraction_at(375) == pytest.approx(0.15)
    assert m.drop_fraction_at(250) == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi / 3)))  # 0.225
    assert m.drop_fraction_at(750) == 0 and m.drop_fraction_at(900) == 0


def test_ever_active_counts_every_weight_that_was_active_and_survives_a_state_round_trip():
    m = RigL(drop_fraction=0.5)
    net, masks, opt, trainer = toy(m)
    assert m.ever_active() == pytest.approx(3 / 9)
    trainer.step(X, Y)
    assert m.ever_active() == pytest.approx(4 / 9)  # (2, 1) joined; (0, 2) stays counted
    assert m.summary_stats() == {"ever_active": pytest.approx(4 / 9), "mask_updates": 1}
    other = RigL(drop_fraction=0.5)
    toy(other)
    other.load_state_dict(m.state_dict())
    assert other.ever_active() == m.ever_active() and other.updates == 1 and other.end_step == 750


@pytest.mark.parametrize("method", ["set", "rigl"])
@pytest.mark.parametrize("override, key", [
    ("method.drop_fraction=0", "method.drop_fraction"), ("method.drop_fraction=1", "method.drop_fraction"),
    ("method.drop_fraction=-0.1", "method.drop_fraction"), ("method.update_every=0", "method.update_every"),
    ("method.stop=0", "method.stop"), ("method.stop=1.5", "method.stop"),
])
def test_bad_values_are_refused_with_key_value_and_fix(method, override, key):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(f"method={method}", override))
    value = override.split("=")[1]
    assert f"{key}={value}" in str(err.value) and "e.g." in str(err.value)


def test_update_every_must_be_an_integer():
    with pytest.raises(ConfigError, match="method.update_every"):
        validate(make_cfg("method=rigl", "method.update_every=2.5"))


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_regrow_dropped_must_be_true_or_false(method):
    with pytest.raises(ConfigError, match="method.regrow_dropped=1 must be true or false"):
        validate(make_cfg(f"method={method}", "method.regrow_dropped=1"))


def test_no_weight_drops_or_grows_in_a_layer_the_budget_keeps_dense():
    from flipout_repro.sparsity.budgets import Budget

    method = RigL(drop_fraction=0.5)
    method.use_budget(Budget("uniform", dense_first=True))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 3, bias=False))
    masks = Masks.for_model(net)
    masks.values[1].copy_(torch.tensor([[1.0, 1, 0, 0]] * 3))  # the second layer at half, the first dense
    masks.active = True
    method.bind(net, masks)
    method.on_train_start(iter([]), 0.5, 10, 100)
    method.after_prune()
    update = method.mask_update(0)
    assert update.counts == [0, 3]  # floor(0.5 x 6) in the sparse layer, none in the dense one
