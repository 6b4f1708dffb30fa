"""SynFlow: the score as the product of path sums on a two-layer net, its rounds, BatchNorm in absolute value,
the refusals, and runs on the bundled subset and tiny CIFAR files."""
import json
import sys

import pytest
import torch
from torch import nn

from helpers import make_cfg, run_cli, write_cifar10
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.methods.synflow import (SynFlow, keep_fractions, linearise, progressive_synflow, reference_cut,
                                           synflow_scores)
from flipout_repro.run import run
from flipout_repro.sparsity.masking import Masks


def two_layer(w1, w2):
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1))
        net[2].weight.copy_(torch.tensor(w2))
    return net


def test_score_is_the_product_of_path_sums_on_a_two_layer_net():
    w1, w2 = [[1.0, -2.0], [0.5, 3.0]], [[-1.0, 2.0], [4.0, -0.5]]
    net = two_layer(w1, w2)
    linearise(net)
    a, b = torch.tensor(w1).abs(), torch.tensor(w2).abs()
    # R = sum_k sum_j sum_i |b_kj| |a_ji| (input 1): the flow through a_ji is |a_ji| times the paths out of j,
    # sum_k |b_kj|; through b_kj, |b_kj| times the paths into j, sum_i |a_ji|
    want_a = a * b.sum(0)[:, None]            # [[1*5, 2*5], [0.5*2.5, 3*2.5]]
    want_b = b * a.sum(1)[None, :]            # [[1*3, 2*3.5], [4*3, 0.5*3.5]]
    sa, sb = synflow_scores(net, [net[0].weight, net[2].weight], (2,))
    assert sa.tolist() == [[5.0, 10.0], [1.25, 7.5]] and torch.equal(sa, want_a)
    assert sb.tolist() == [[3.0, 7.0], [12.0, 1.75]] and torch.equal(sb, want_b)


def test_rounds_rescore_the_masked_network_and_pruned_weights_stay_pruned():
    net = two_layer([[1.0, -2.0], [0.5, 3.0]], [[-1.0, 2.0], [4.0, -0.5]])
    # round 1 keeps 0.5^(1/2) of 8 weights: prunes round(8 (1 - 0.707)) = 2, the lowest of the scores above,
    # a_10 (1.25) and b_11 (1.75). Round 2 rescores the masked net: out of hidden unit 0 run b_00 + b_10 = 5,
    # out of unit 1 b_01 = 2, so a scores [[5, 10], [0, 6]]; into unit 0 run a_00 + a_01 = 3, into unit 1
    # a_11 = 3, so b scores [[3, 6], [12, 0]]. Round 2 keeps the top 4: 12, 10, 6, 6.
    got = progressive_synflow(net, (2,), 0.5, 2)
    kept = [(s >= 0).int().tolist() for s in got]
    assert kept == [[[0, 1], [0, 1]], [[0, 1], [1, 0]]]
    assert sum(int((s >= 0).sum()) for s in got) == 4
    assert net[0].weight[0, 1].item() == -2.0  # scored on a copy


def test_batchnorm_counts_as_the_absolute_affine_map_of_its_statistics():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
        net[1].weight.copy_(torch.tensor([-2.0, 0.5]))
        net[1].bias.copy_(torch.tensor([1.0, -3.0]))
        net[1].running_mean.copy_(torch.tensor([-1.0, 0.0]))
        net[1].running_var.copy_(torch.tensor([4.0, 1.0]))
        net[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
    net.eval()
    linearise(net)
    s0, s2 = synflow_scores(net, [net[0].weight, net[2].weight], (2,))
    eps = net[1].eps
    gain = torch.tensor([2.0 / (4.0 + eps) ** 0.5, 0.5 / (1.0 + eps) ** 0.5])
    # unit j of the BN: (h_j - |mean_j|) * gain_j + |beta_j|; R = sum_j |w2_j| that
    assert torch.allclose(s0, torch.tensor([[1.0, 2.0], [1.0, 1.0]]) * gain[:, None])
    h = torch.tensor([3.0, 2.0])
    assert torch.allclose(s2, ((h - torch.tensor([1.0, 0.0])) * gain + torch.tensor([1.0, 3.0]))[None, :])


def test_reference_cut_prunes_k_and_ties_with_the_threshold():
    scores = [torch.tensor([3.0, 1.0, 2.0, 1.0]), torch.tensor([5.0, 1.0])]
    masks = [torch.ones(4), torch.ones(2)]
    reference_cut(scores, masks, 0.7)  # k = int(0.3 * 6) = 1: threshold 1, and all three 1s go
    assert masks[0].tolist() == [1, 0, 1, 0] and masks[1].tolist() == [1, 0]
    assert keep_fractions(0.01, 2, "exp") == [0.01 ** 0.5, 0.01 ** 1.0]
    assert keep_fractions(0.1, 2, "linear") == [1 - 0.9 * 0.5, 1 - 0.9]


def test_refusals_name_the_key():
    with pytest.raises(ConfigError, match="pattern='nm' does not apply to method=synflow, whose rounds prune"):
        validate(make_cfg("experiment=quickstart", "method=synflow", "pattern=nm"))
    with pytest.raises(ConfigError, match="budget='uniform' does not apply to method.cut=reference"):
        validate(make_cfg("experiment=quickstart", "method=synflow", "method.cut=reference", "budget=uniform"))
    for bad in ("method.rounds=0", "method.mode=cubic", "method.dtype=half"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            validate(make_cfg("experiment=quickstart", "method=synflow", bad))
    with pytest.raises(ConfigError, match="method='synflow' has no Conv2d or Linear weight"):
        SynFlow().bind(nn.Sequential(nn.Flatten()), Masks([], [], []))


@pytest.mark.parametrize("extra", [(), ("budget=erk", "method.dtype=float64", "method.rounds=5"),
                                   ("method.cut=reference", "method.mode=linear", "method.rounds=3")])
def test_synflow_runs_on_the_bundled_subset(quick_cfg, extra):
    summary = run(quick_cfg("method=synflow", "epochs=1", "sparsity=0.98", *extra))
    assert summary["status"] == "completed" and summary["config"]["schedule"]["name"] == "one_shot"
    assert summary["nonzero"] == summary["prunable"] - round(0.98 * summary["prunable"])


@pytest.mark.slow
def test_cli_synflow_on_the_bundled_subset(tmp_path):
    r = run_cli("experiment=quickstart", "method=synflow", "epochs=1", "sparsity=0.98", "schedule.rounding=exact",
                "progress=false", "device=cpu", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    [path] = list(tmp_path.glob("runs/**/summary.json"))
    summary = json.loads(path.read_text())
    assert summary["method"] == "synflow" and summary["nonzero"] == 338_200 - round(0.98 * 338_200)


def test_cli_synflow_on_tiny_cifar10_files(tmp_path, no_md5, monkeypatch):
    """VGG19 of the FORCE protocol (BatchNorm as its running statistics) on CIFAR-format files, 3 rounds to 90 %."""
    from flipout_repro.cli.train import main
    write_cifar10(tmp_path / "data", n=10)
    monkeypatch.setattr(sys, "argv", [
        "flipout-train", "dataset=cifar10", "model=vgg19_force", "method=synflow", "method.rounds=3", "epochs=1",
        "batch_size=16", "device=cpu", "progress=false", "dataset.download=false", "sparsity=0.9",
        f"dataset.root={tmp_path / 'data'}", f"results_dir={tmp_path / 'r'}"])
    main()
    [path] = list((tmp_path / "r").glob("runs/**/summary.json"))
    summary = json.loads(path.read_text())
    assert summary["status"] == "completed" and summary["method"] == "synflow"
    assert summary["prunable"] == 20_024_000 and summary["nonzero"] == 2_002_400


def test_cli_refuses_synflow_with_nm_in_one_line_before_writing(tmp_path):
    results = tmp_path / "results"
    r = run_cli("experiment=quickstart", "method=synflow", "pattern=nm", "epochs=1", "progress=false",
                "device=cpu", f"results_dir={results}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "pattern='nm' does not apply to method=synflow" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not results.exists() or not any(results.rglob("*"))
