"""method.init of FORCE / Iterative SNIP: the FORCE reference's kaiming-normal re-draw of every Conv2d and
Linear weight of the model it then prunes and trains (train_cifar_tiny_imagenet.py:126-138)."""
import math

import pytest
import torch
from torch import nn

from conftest import make_cfg
from flipout_repro.config import ConfigError, validate
from flipout_repro.masking import Masks
from flipout_repro.methods.force import FORCE, keep_fractions, progressive_scores, step_sparsity
from flipout_repro.methods.iter_snip import IterSNIP
from flipout_repro.methods.saliency import BatchSource, reinitialise
from flipout_repro.rundir import config_hash
from flipout_repro.run import run


def small_net():
    """Conv2d(2, 4, 3) -> BN -> ReLU -> flatten (4 x 3 x 3 = 36) -> Linear(36, 5)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(36, 5))


# kaiming_normal_(nonlinearity="relu") draws N(0, 2 / fan): fan_in = 2*3*3 = 18 (conv), 36 (linear);
# fan_out = 4*3*3 = 36 (conv), 5 (linear)
STD = {"kaiming_normal": (math.sqrt(2 / 18), math.sqrt(2 / 36)),
       "kaiming_normal_fan_out": (math.sqrt(2 / 36), math.sqrt(2 / 5))}


@pytest.mark.parametrize("init", sorted(STD))
def test_reinitialise_draws_each_weight_in_module_order_with_the_hand_computed_std(init):
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(7)
    reinitialise(net, init)
    torch.manual_seed(7)  # the same draws, by hand: conv first, then the linear layer
    conv = torch.empty(4, 2, 3, 3).normal_(0, STD[init][0])
    lin = torch.empty(5, 36).normal_(0, STD[init][1])
    assert torch.allclose(net[0].weight, conv, rtol=1e-6, atol=0) and torch.allclose(net[4].weight, lin, rtol=1e-6, atol=0)
    for key in ("0.bias", "1.weight", "1.bias", "1.running_mean", "4.bias"):  # biases and BatchNorm untouched
        assert torch.equal(net.state_dict()[key], before[key]), key


def test_init_model_leaves_the_weights_alone():
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reinitialise(net, "model")
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def batches():
    torch.manual_seed(1)
    return [(torch.randn(8, 2, 5, 5), torch.randint(0, 5, (8,)))]


@pytest.mark.parametrize("cls", [FORCE, IterSNIP])
def test_the_redrawn_weights_are_scored_and_kept_for_training(cls):
    """The run's own model is re-drawn (those weights are trained), and the scores are those of the
    iterations on the re-drawn weights."""
    net, data = small_net(), batches() * 2
    method = cls(steps=2, init="kaiming_normal")
    method.bind(net, Masks.for_model(net))
    torch.manual_seed(11)
    method.on_train_start(iter(data), 0.5, 1, 2)
    expected = small_net()
    torch.manual_seed(11)
    reinitialise(expected, "kaiming_normal")
    assert torch.equal(net[0].weight, expected[0].weight) and torch.equal(net[4].weight, expected[4].weight)
    scores = progressive_scores(expected, BatchSource(iter(data), 2, 2), 0.5, 2, "exp", 1, cls.revive)
    assert all(torch.equal(a, b) for a, b in zip(method.scores(net), scores))


def test_the_redraw_happens_at_zero_sparsity_too():
    net = small_net()
    w = net[4].weight.clone()
    method = FORCE(steps=2, init="kaiming_normal")
    method.bind(net, Masks.for_model(net))
    method.on_train_start(iter(batches()), 0.0, 1, 1)
    assert not torch.equal(net[4].weight, w)  # the reference re-draws before pruning whatever the sparsity


@pytest.mark.parametrize("method", ["force", "iter_snip"])
def test_bad_init_fails_validation_and_the_neutral_value_keeps_the_hash(method):
    with pytest.raises(ValueError, match="method.init"):
        FORCE(init="xavier")
    with pytest.raises(ConfigError, match="method.init"):
        validate(make_cfg(f"method={method}", "method.init=orthogonal"))
    base = config_hash(make_cfg(f"method={method}"))
    assert make_cfg(f"method={method}").method.init == "model"
    assert config_hash(make_cfg(f"method={method}", "method.init=model")) == base
    assert config_hash(make_cfg(f"method={method}", "method.init=kaiming_normal")) != base


def test_force_reinit_end_to_end(quick_cfg):
    summary = run(quick_cfg("method=force", "method.steps=5", "method.init=kaiming_normal", "epochs=2"))
    assert summary["achieved_sparsity"] == pytest.approx(0.99, abs=1 / summary["prunable"])
    assert summary["config"]["method"]["init"] == "kaiming_normal"
    assert summary["final_test_acc"] > 10.0


def test_floor_rounding_keeps_the_references_counts():
    # 0.1 ** (1/3) etc. as the reference computes them: exp(-(t * -ln 0.1) / 3) = 0.46416, 0.21544, 0.1
    fr = keep_fractions(0.1, 3, "exp", "floor")
    assert fr == pytest.approx([0.1 ** (1 / 3), 0.1 ** (2 / 3), 0.1], rel=1e-12)
    # N = 6: exact prunes round(6 * (1 - 0.464)) = 3 and keeps 3 (as floor: int(2.78) = 2 kept)
    assert step_sparsity(6, fr[0], "exact") == pytest.approx(1 - fr[0])
    assert step_sparsity(6, fr[0], "floor") == 4 / 6
    # called with 1 - 0.9 (as our runs do), the reference's k_T is 0.09999999999999998 and it keeps
    # int(20,024,000 k_T) = 2,002,399 weights of VGG19 (measured on naver/force's code), one below exact
    assert int(20_024_000 * keep_fractions(1 - 0.9, 3, "exp", "floor")[-1]) == 2_002_399


def test_floor_rounding_changes_the_intermediate_mask_by_the_rounded_weight():
    """Six weights, keep 0.5 after 2 exp steps: step 1 keeps sqrt(0.5) = 0.707: exact keeps 6 - round(1.76)
    = 4, floor keeps int(4.24) = 4; with keep 0.3 after 2 steps (0.548): exact keeps 6 - round(2.71) = 3,
    floor int(3.29) = 3. With 7 weights and keep 0.5: exact 7 - round(2.05) = 5, floor int(4.95) = 4."""
    def first_step_kept(n, keep, rounding):
        fr = keep_fractions(keep, 2, "exp", rounding)
        return n - round(n * step_sparsity(n, fr[0], rounding))
    assert first_step_kept(6, 0.5, "exact") == first_step_kept(6, 0.5, "floor") == 4
    assert first_step_kept(7, 0.5, "exact") == 5 and first_step_kept(7, 0.5, "floor") == 4


def test_bad_rounding():
    with pytest.raises(ValueError, match="method.rounding"):
        IterSNIP(rounding="round")
    with pytest.raises(ValueError, match="method.scope=global"):
        FORCE(rounding="floor", scope="layer")
    assert config_hash(make_cfg("method=force", "method.rounding=exact")) == config_hash(make_cfg("method=force"))
    assert config_hash(make_cfg("method=force", "method.rounding=floor")) != config_hash(make_cfg("method=force"))
