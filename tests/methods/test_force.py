"""Iterative SNIP and FORCE: keep fractions, the scores of a second iteration by hand, FORCE reviving a
weight that Iterative SNIP cannot, and both methods on the bundled subset."""
import math

import pytest
import torch
from torch import nn

from flipout_repro.methods.force import FORCE, keep_fractions, progressive_scores
from flipout_repro.methods.iter_snip import IterSNIP
from flipout_repro.methods.saliency import BatchSource
from flipout_repro.run import run


def test_keep_fractions_exp_and_linear():
    assert keep_fractions(0.01, 2, "exp") == pytest.approx([0.1, 0.01])
    assert keep_fractions(0.125, 3, "exp") == pytest.approx([0.5, 0.25, 0.125])
    assert keep_fractions(0.4, 3, "linear") == pytest.approx([0.8, 0.6, 0.4])


def two_layer():
    """x (1) -> A (2x1) -> h -> B (2x2) -> logits, no biases or nonlinearity.

    With x = 1 and y = 0, dL/dz = p1 * [-1, 1], so the saliencies are
    S_A[j] = |a_j| p1 |B_1j - B_0j| and S_B[i, j] = p1 |B_ij| |h_j|.
    Dense: a = [1, 0.1], B = [[0.2, 5], [1, 5.5]] give (/p1) a: [0.8, 0.05], B: [[0.2, 0.5], [1, 0.55]].
    """
    net = nn.Sequential(nn.Linear(1, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [0.1]]))
        net[1].weight.copy_(torch.tensor([[0.2, 5.0], [1.0, 5.5]]))
    return net


BATCH = (torch.tensor([[1.0]]), torch.tensor([0]))


def kept(scores):
    return [(s > -1).int().flatten().tolist() for s in scores]


def scores_of(revive, steps, target):
    return progressive_scores(two_layer(), BatchSource(iter([BATCH]), steps, 1), target, steps, "exp", 1, revive)


def test_first_iteration_prunes_the_two_lowest_saliencies():
    # keep sqrt(0.5) of 6 after the first of two steps: 2 pruned, the lowest a_2 (0.05) and B_00 (0.2)
    assert kept(scores_of(True, 1, 1 - math.sqrt(0.5))) == [[1, 0], [0, 1, 1, 1]]


def test_force_second_iteration_scores_by_hand_and_revives_a_pruned_weight():
    s = scores_of(True, 2, 0.5)  # keep 3 of 6 after step 2
    # step 2 runs at theta0 * m: a_2 = B_00 = 0, so h = [1, 0], z = [0, 1], p1 = e / (1 + e);
    # FORCE scores |theta0 * g|: a = p1 * [1 * |1 - 0|, 0.1 * |5.5 - 5|], B = p1 * [[0.2, 0], [1, 0]]
    p1 = math.e / (1 + math.e)
    assert kept(s) == [[1, 0], [1, 0, 1, 0]]  # B_00 is back
    assert s[1][0, 0].item() == pytest.approx(0.2 * p1, rel=1e-5)
    assert s[0][0, 0].item() == pytest.approx(p1, rel=1e-5) and s[1][1, 0].item() == pytest.approx(p1, rel=1e-5)


def test_iterative_snip_cannot_revive():
    s = scores_of(False, 2, 0.5)
    first = [[1, 0], [0, 1, 1, 1]]
    for layer_now, layer_first in zip(kept(s), first):
        assert all(now <= before for now, before in zip(layer_now, layer_first))  # only ever removes
    assert kept(s)[0] == [1, 0] and kept(s)[1][0] == 0 and sum(map(sum, kept(s))) == 3


def test_method_scores_reproduce_the_final_mask_and_bad_knobs():
    m = FORCE(steps=2)
    net = two_layer()
    from flipout_repro.sparsity.masking import Masks, prune_to
    masks = Masks.for_model(net)
    m.bind(net, masks)
    m.on_train_start(iter([BATCH]), 0.5, 1, 1)
    prune_to(m.scores(net), masks, 0.5)
    assert [v.int().flatten().tolist() for v in masks.values] == [[1, 0], [1, 0, 1, 0]]
    for kwargs, key in (({"steps": 0}, "method.steps"), ({"mode": "cosine"}, "method.mode"),
                        ({"batches": 0}, "method.batches")):
        with pytest.raises(ValueError, match=key):
            IterSNIP(**kwargs)


@pytest.mark.parametrize("method", ["iter_snip", "force"])
def test_runs_at_initialisation_on_the_bundled_subset(quick_cfg, method):
    summary = run(quick_cfg(f"method={method}", "method.steps=10", "method.mode=linear", "method.batches=2",
                            "epochs=2"))
    assert summary["achieved_sparsity"] == pytest.approx(0.99, abs=1 / summary["prunable"])
    assert summary["config"]["schedule"]["name"] == "one_shot"
    assert summary["final_test_acc"] > 10.0


@pytest.mark.parametrize("method", ["force", "iter_snip"])
def test_batches_per_step_default_is_the_papers_for_the_data_set(method):
    from helpers import make_cfg

    assert make_cfg(f"method={method}", "dataset=cifar10").method.batches == 1
    assert make_cfg(f"method={method}", "dataset=cifar100").method.batches == 10
    assert make_cfg(f"method={method}", "dataset=cifar100", "method.batches=3").method.batches == 3


def test_reference_cut_keeps_the_kept_fraction_the_reference_is_given():
    from flipout_repro.methods.saliency import reference_keep
    assert reference_keep(0.9) == 0.1 and 1 - 0.9 == 0.09999999999999998
    k_t = keep_fractions(reference_keep(0.9), 60, "exp", "reference")[-1]
    assert k_t == math.exp(math.log(0.1)) == 0.10000000000000002
    assert int(20_024_000 * k_t) == 2_002_400  # N/10, the reference's count (1 - 0.9 would keep 2,002,399)
    assert int(20_024_000 * keep_fractions(1 - 0.9, 60, "exp", "reference")[-1]) == 2_002_399


@pytest.mark.parametrize("method", [FORCE, IterSNIP])
def test_with_the_reference_cut_the_event_ends_on_the_iterations_mask(method):
    """LeNet-300-100 (266,200 weights) at 0.501: the reference keeps int(0.499 N) = 132,833 where the target's
    count keeps N - round(0.501 N) = 132,834; the run's event keeps the reference's mask, not one more by position."""
    from flipout_repro.models.lenet import LeNet300100
    from flipout_repro.sparsity.masking import Masks, prune_to
    torch.manual_seed(0)
    model = LeNet300100()
    masks = Masks.for_model(model)
    m = method(steps=2, cut="reference")
    m.bind(model, masks)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g))]
    m.on_train_start(iter(batches), 0.501, 1, 1)
    scores = m.scores(model)
    final = [torch.isfinite(s) for s in scores]
    assert sum(int(f.sum()) for f in final) == 132_833
    prune_to(scores, masks, 0.501)
    assert all(torch.equal(v.bool(), f) for v, f in zip(masks.values, final))


@pytest.mark.parametrize("experiment", ["force_vgg19_cifar10", "force_resnet50_cifar100"])
def test_the_force_presets_end_on_the_references_final_mask(experiment):
    """The presets' method, given sparsity 0.9 (the README's --pruning_factor 0.1), keeps int(N exp(log 0.1))
    = N/10 weights as the reference's last iteration (1 - 0.9 would keep N/10 - 1), and the preset's one-shot
    event applies exactly that mask: the weights it keeps are the ones the iterations kept, none by position.
    LeNet-300-100 on 28x28 digits: N = 266,200, N/10 = 26,620 (int(N (1 - 0.9)) = 26,619)."""
    from helpers import make_cfg
    from flipout_repro.config.validate import instantiate
    from flipout_repro.models.lenet import LeNet300100
    from flipout_repro.sparsity.masking import Masks, prune_to
    cfg = make_cfg(f"experiment={experiment}", "method.steps=3", "sparsity=0.9")
    assert cfg.method.cut == "reference" and cfg.schedule.name == "one_shot"
    method = instantiate(cfg.method, "method")
    torch.manual_seed(0)
    model = LeNet300100()
    masks = Masks.for_model(model)
    method.bind(model, masks)
    n = sum(p.numel() for p in masks.params)
    assert n == 266_200 and int(n * math.exp(math.log(0.1))) == 26_620 and int(n * (1 - 0.9)) == 26_619
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(4)]
    method.on_train_start(iter(batches), 0.9, 1, len(batches))
    scores = method.scores(model)
    final = [torch.isfinite(s) for s in scores]
    assert sum(int(f.sum()) for f in final) == 26_620
    schedule = instantiate(cfg.schedule, "schedule")
    [event] = schedule.events(0.9, 1, len(batches))
    assert event.step == 0
    prune_to(scores, masks, event.sparsity, count=event.count)
    assert all(torch.equal(v.bool(), f) for v, f in zip(masks.values, final))
