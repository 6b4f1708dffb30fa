"""method.init of FORCE / Iterative SNIP: the FORCE reference's kaiming-normal re-draw of every Conv2d and
Linear weight of the model it then prunes and trains (train_cifar_tiny_imagenet.py:126-138)."""
import math

import pytest
import torch
from torch import nn

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.budgets import Budget
from flipout_repro.sparsity.masking import Masks
from flipout_repro.methods.force import FORCE, keep_fractions, progressive_scores, reference_cut
from flipout_repro.methods.iter_snip import IterSNIP
from flipout_repro.methods.saliency import BatchSource, reinitialise
from helpers import run_hash
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
    base = run_hash(make_cfg(f"method={method}"))
    assert make_cfg(f"method={method}").method.init == "model"
    assert run_hash(make_cfg(f"method={method}", "method.init=model")) == base
    assert run_hash(make_cfg(f"method={method}", "method.init=kaiming_normal")) != base


def test_force_reinit_end_to_end(quick_cfg):
    summary = run(quick_cfg("method=force", "method.steps=5", "method.init=kaiming_normal", "epochs=2"))
    assert summary["achieved_sparsity"] == pytest.approx(0.99, abs=1 / summary["prunable"])
    assert summary["config"]["method"]["init"] == "kaiming_normal"
    assert summary["final_test_acc"] > 10.0


def test_reference_cut_counts_use_the_references_expression():
    # the reference's k_t = exp(-(t * -ln k) / T): for k = 0.1, T = 3: 0.46416, 0.21544, 0.1
    fr = keep_fractions(0.1, 3, "exp", "reference")
    assert fr == pytest.approx([0.1 ** (1 / 3), 0.1 ** (2 / 3), 0.1], rel=1e-12)
    # called with 1 - 0.9 (as our runs do), the reference's k_T is 0.09999999999999998 and it keeps
    # int(20,024,000 k_T) = 2,002,399 weights of VGG19 (measured on naver/force's code), one below exact
    assert int(20_024_000 * keep_fractions(1 - 0.9, 3, "exp", "reference")[-1]) == 2_002_399


def test_reference_cut_keeps_every_weight_tied_with_the_cut():
    # FORCE: scores A = [4, 2], B = [2, 1, 0], keep 0.5 of 5: int(2.5) = 2, the 2nd largest is 2, so both 2s
    # stay: 3 kept (exact would keep 5 - round(2.5) = 2)
    keep = [torch.ones(2), torch.ones(3)]
    reference_cut([torch.tensor([4.0, 2.0]), torch.tensor([2.0, 1.0, 0.0])], keep, 0.5, revive=True)
    assert [k.tolist() for k in keep] == [[1, 1], [1, 0, 0]]


def test_reference_cut_for_iterative_snip_and_a_cut_at_the_minimum():
    scores = [torch.tensor([4.0, 0.0]), torch.tensor([2.0, 0.0, 0.0])]  # B_2 was pruned (scores 0)
    keep = [torch.ones(2), torch.tensor([1.0, 1.0, 0.0])]
    reference_cut(scores, keep, 0.2, revive=False)  # int(1.0) = 1: the cut is 4
    assert [k.tolist() for k in keep] == [[1, 0], [0, 0, 0]]
    keep = [torch.ones(2), torch.tensor([1.0, 1.0, 0.0])]
    ranked = reference_cut(scores, keep, 0.8, revive=False)  # int(4.0) = 4: the 4th largest is 0 = the min
    assert [k.tolist() for k in keep] == [[1, 1], [1, 1, 1]]  # all kept, the pruned B_2 re-admitted
    assert ranked[1].tolist() == [2.0, 0.0, 0.0]


def final_scores(revive, cut):
    """The two-layer network of test_force.py, 2 exp steps to 50 %: int(6 * 0.707) = 4 = 6 - round(1.76)
    weights kept after step 1 either way, then 3 of 6."""
    from test_force import BATCH, two_layer

    s = progressive_scores(two_layer(), BatchSource(iter([BATCH]), 2, 1), 0.5, 2, "exp", 1, revive, cut=cut)
    return [x.flatten().tolist() for x in s]


def test_reference_cut_equals_exact_for_force_when_nothing_ties():
    from flipout_repro.methods.force import outside_score

    def kept(cut):  # the final mask: every weight scored above the outside score, and those scores
        return [[x if x > outside_score(cut) else None for x in layer] for layer in final_scores(True, cut)]

    assert kept("reference") == kept("exact")


def test_reference_cut_keeps_everything_when_iterative_snip_cuts_at_zero():
    """Step 1 prunes a_2 and B_00 (the two lowest, see test_force.py). Step 2 runs a = [1, 0],
    B = [[0, 5], [1, 5.5]]: h = [1, 0], z = [0, 1], dL/dz = p1 [-1, 1] with p1 = e / (1 + e), so only a_1
    (|1 * p1 * (B_10 - B_00)| = p1, B_00 being 0 now) and B_10 (|1 * p1 * h_1| = p1) score above 0 (h_2 = 0,
    a_2 and B_00 pruned): the 3rd largest score is 0, the minimum, and the reference keeps all six weights;
    exact keeps 3 (a zero-scored one by position)."""
    p1 = math.e / (1 + math.e)
    ref = final_scores(False, "reference")
    assert ref == [pytest.approx([p1, 0.0]), pytest.approx([0.0, 0.0, p1, 0.0])]  # nothing at -1: all kept
    exact = final_scores(False, "exact")
    assert sum(v > -1 for layer in exact for v in layer) == 3
    assert exact[0][0] == pytest.approx(p1) and exact[1][2] == pytest.approx(p1)


def test_bad_cut():
    with pytest.raises(ValueError, match="method.cut"):
        IterSNIP(cut="floor")
    with pytest.raises(ConfigError, match="budget='uniform' does not apply to method.cut=reference"):
        FORCE(cut="reference").use_budget(Budget("uniform"))
    assert run_hash(make_cfg("method=force", "method.cut=exact")) == run_hash(make_cfg("method=force"))
    assert run_hash(make_cfg("method=force", "method.cut=reference")) != run_hash(make_cfg("method=force"))
