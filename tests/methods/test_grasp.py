"""GraSP: theta * Hg against an explicitly formed Hessian, the reference's per-class samples and halves, the
checks that refuse bad input before anything is written, and runs on the bundled subset and tiny CIFAR
files."""
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import make_cfg, run_cli, write_cifar10
from flipout_repro.errors import ConfigError
from flipout_repro.methods.grasp import EPS, GraSP, grasp_scores, per_class_samples, split_halves
from flipout_repro.run import run
from flipout_repro.sparsity.masking import Masks


def two_layer():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Tanh(), nn.Linear(2, 3, bias=False)).double()
    return net


def test_score_is_theta_times_hessian_gradient_product_formed_explicitly():
    net = two_layer()
    w1, w2 = (p.detach().clone() for p in net.parameters())
    torch.manual_seed(4)
    halves = [(torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 1])),
              (torch.randn(3, 3, dtype=torch.float64), torch.tensor([2, 2, 1]))]
    T = 2.0

    def loss(flat, x, y):  # the network as a function of its 6 + 6 weights
        a, b = flat[:6].view(2, 3), flat[6:].view(3, 2)
        return F.cross_entropy(torch.tanh(x @ a.T) @ b.T / T, y)

    flat = torch.cat([w1.flatten(), w2.flatten()])
    g = sum(torch.autograd.functional.jacobian(lambda f: loss(f, x, y), flat) for x, y in halves)
    H = sum(torch.autograd.functional.hessian(lambda f: loss(f, x, y), flat) for x, y in halves)
    keep = flat * (H @ g)  # = -S, S = -theta * Hg (GraSP eq. 8)
    want = keep / ((-keep).sum().abs() + EPS)
    got = grasp_scores(net, halves, temperature=T)
    assert torch.allclose(torch.cat([s.flatten() for s in got]), want, rtol=1e-9, atol=1e-15)
    assert H.abs().max() > 0 and not torch.allclose(H, torch.zeros_like(H))
    assert all(p.grad is None for p in net.parameters())  # scored on a copy


def test_per_class_samples_take_each_class_in_order_and_split_in_halves():
    x = torch.arange(8.0).view(8, 1)
    batches = iter([(x[:4], torch.tensor([1, 0, 1, 1])), (x[4:], torch.tensor([0, 2, 2, 0]))])
    xs, ys = per_class_samples(batches, 3, 2)
    assert xs.flatten().tolist() == [1.0, 4.0, 0.0, 2.0, 5.0, 6.0] and ys.tolist() == [0, 0, 1, 1, 2, 2]
    (a, ya), (b, yb) = split_halves(xs, ys)
    assert ya.tolist() == [0, 0, 1] and yb.tolist() == [1, 2, 2]  # the lower classes in the first half
    with pytest.raises(RuntimeError, match="ran out"):
        per_class_samples(iter([(x[:4], torch.tensor([1, 0, 1, 1]))]), 3, 1)


def test_reinit_linear_scores_a_xavier_copy_and_leaves_the_model():
    net = two_layer()
    before = [p.detach().clone() for p in net.parameters()]
    halves = [(torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 1]))] * 2
    torch.manual_seed(9)
    got = grasp_scores(net, halves, reinit_linear=True)
    copy = two_layer()
    torch.manual_seed(9)
    with torch.no_grad():
        for p in copy.parameters():
            nn.init.xavier_normal_(p)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert torch.allclose(torch.cat([s.flatten() for s in got]),
                          torch.cat([s.flatten() for s in grasp_scores(copy, halves)]))


def test_data_too_small_for_the_per_class_samples_is_refused_with_the_key():
    method = GraSP(samples_per_class=3, iterations=2)
    method.check_data(torch.tensor([0] * 6 + [1] * 7), 2)  # 6 of each needed: fine
    with pytest.raises(ConfigError, match=r"method.samples_per_class=3 needs 6 training images of each of the 3"
                                          r" classes .* class 2 has 0"):
        method.check_data(torch.tensor([0] * 6 + [1] * 7), 3)
    with pytest.raises(ConfigError, match="use method.samples_per_class=2"):
        method.check_data(torch.tensor([0] * 6 + [1] * 5), 2)


def test_a_model_without_weights_to_score_is_refused():
    with pytest.raises(ConfigError, match="method='grasp' has no Conv2d or Linear weight"):
        GraSP().bind(nn.Sequential(nn.Flatten()), Masks([], [], []))


@pytest.mark.parametrize("bad", ["method.samples_per_class=0", "method.temperature=0", "method.iterations=1.5"])
def test_bad_knobs_fail_with_the_key(bad):
    from flipout_repro.config.validate import validate
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        validate(make_cfg("experiment=quickstart", "method=grasp", bad))


def test_a_run_whose_data_is_too_small_fails_before_writing(quick_cfg, tmp_path):
    with pytest.raises(ConfigError, match="method.samples_per_class=1000 needs 1000 training images"):
        run(quick_cfg("method=grasp", "method.samples_per_class=1000"))
    assert not (tmp_path / "runs").exists()


def test_grasp_runs_at_initialisation_on_the_bundled_subset(quick_cfg):
    summary = run(quick_cfg("method=grasp", "epochs=1", "sparsity=0.9"))
    assert summary["status"] == "completed" and summary["config"]["schedule"]["name"] == "one_shot"
    assert summary["nonzero"] == summary["prunable"] - round(0.9 * summary["prunable"])
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    [prune] = [r for r in records if r["type"] == "prune"]
    assert prune["step"] == 0


def test_grasp_with_a_layer_budget_and_nm_pattern(quick_cfg):
    summary = run(quick_cfg("method=grasp", "epochs=1", "pattern=nm", "sparsity=0.5", "method.samples_per_class=2"))
    assert summary["status"] == "completed" and summary["achieved_sparsity"] == pytest.approx(0.5)


@pytest.mark.slow
def test_cli_grasp_on_the_bundled_subset(tmp_path):
    r = run_cli("experiment=quickstart", "method=grasp", "epochs=1", "sparsity=0.98", "schedule.rounding=exact",
                "progress=false", "device=cpu", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    [path] = list(tmp_path.glob("runs/**/summary.json"))
    summary = json.loads(path.read_text())
    assert summary["method"] == "grasp" and summary["nonzero"] == 338_200 - round(0.98 * 338_200)


def cli_in_process(monkeypatch, *args):
    """flipout-train ARGS in this process (so that the tiny CIFAR files pass torchvision's check: no_md5)."""
    from flipout_repro.cli.train import main
    monkeypatch.setattr(sys, "argv", ["flipout-train", *args])
    main()


def test_cli_grasp_on_tiny_cifar10_files(tmp_path, no_md5, monkeypatch):
    """VGG19 of the FORCE protocol (BatchNorm in training mode while scoring) on CIFAR-format files of 100
    training images: 2 a class are drawn, then it trains an epoch at 90 %."""
    write_cifar10(tmp_path / "data", n=20)
    cli_in_process(monkeypatch, "dataset=cifar10", "model=vgg19_force", "method=grasp", "method.samples_per_class=2",
                   "epochs=1", "batch_size=16", "device=cpu", "progress=false", "dataset.download=false",
                   "sparsity=0.9", f"dataset.root={tmp_path / 'data'}", f"results_dir={tmp_path / 'r'}")
    [path] = list((tmp_path / "r").glob("runs/**/summary.json"))
    summary = json.loads(path.read_text())
    assert summary["status"] == "completed" and summary["method"] == "grasp"
    assert summary["prunable"] == 20_024_000 and summary["nonzero"] == 2_002_400


def files_under(root):
    return sorted(root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("bad, says", [
    (("method.samples_per_class=1000",),
     "method.samples_per_class=1000 needs 1000 training images of each of the 10 classes (1 iteration(s)), but"
     " class 0 has 400: use method.samples_per_class=400"),
    (("pattern=nm", "pattern.n=2", "pattern.m=8"),
     "pattern.m=8 does not divide the input dimension 300 of"),
])
def test_cli_refuses_bad_input_in_one_line_before_writing(tmp_path, bad, says):
    results = tmp_path / "results"
    r = run_cli("experiment=quickstart", "method=grasp", "epochs=1", "progress=false", "device=cpu",
                f"results_dir={results}", *bad, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert says in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert files_under(results) == []
