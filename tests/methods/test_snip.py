"""SNIP: the connection sensitivity by hand, the FlipOut repository's quirks, and a run on the bundled
subset with the one_shot schedule its yaml selects."""
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import make_cfg, run_cli
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.methods.snip import SNIP, snip_saliency
from flipout_repro.run import run


def one_layer(w):
    net = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w))
    return net


X, Y = torch.tensor([[1.0, 0.5]]), torch.tensor([0])


def test_saliency_is_normalised_abs_grad_times_weight_by_hand():
    net = one_layer([[1.0, 2.0], [3.0, -1.0]])
    # logits z = W x = [2, 2.5]; dL/dz = softmax(z) - e_0 = [p0 - 1, p1] with p1 = 1 / (1 + e^-0.5)
    p1 = 1 / (1 + math.exp(-0.5))
    g = torch.tensor([[-p1, -p1 * 0.5], [p1, p1 * 0.5]])  # dL/dW = dL/dz x^T
    sal = (g * torch.tensor([[1.0, 2.0], [3.0, -1.0]])).abs()
    [got] = snip_saliency(net, [(X, Y)])
    assert torch.allclose(got, sal / sal.sum(), atol=1e-6)
    assert got.sum().item() == pytest.approx(1.0)
    assert net[0].weight.grad is None and net[0].weight[0, 0].item() == 1.0  # the model itself is untouched


def test_reference_quirks_use_a_xavier_copy_and_nll_on_raw_logits():
    net = one_layer([[1.0, 2.0], [3.0, -1.0]])
    torch.manual_seed(5)
    w_copy = nn.init.xavier_normal_(torch.empty(2, 2))
    torch.manual_seed(5)
    [got] = snip_saliency(net, [(X, Y)], reference_quirks=True)
    # nll_loss on raw logits: L = -z_0, so dL/dW = [[-1, -0.5], [0, 0]], at the re-drawn weights
    sal = (torch.tensor([[-1.0, -0.5], [0.0, 0.0]]) * w_copy).abs()
    assert torch.allclose(got, sal / sal.sum(), atol=1e-6)
    assert net[0].weight.tolist() == [[1.0, 2.0], [3.0, -1.0]]  # the mask goes to the original weights


def test_scores_feed_prune_to_and_survive_a_resume():
    net = one_layer([[1.0, 2.0], [3.0, -1.0]])
    masks = Masks.for_model(net)
    method = SNIP()
    method.bind(net, masks)
    method.on_train_start(iter([(X, Y)]), 0.5, 1, 1)
    prune_to(method.scores(net), masks, 0.5)
    # saliencies |g w| up to p1: [[1, 1], [3, 0.5]] -> the two lowest are (1, 1) = 0.5 and one of the 1s
    assert masks.values[0][1].tolist() == [1.0, 0.0] and masks.values[0].sum() == 2
    other = SNIP()
    other.bind(one_layer([[0.0, 0.0], [0.0, 0.0]]), Masks.for_model(net))
    other.load_state_dict(method.state_dict())
    assert torch.equal(other.scores(net)[0], method.scores(net)[0])


@pytest.mark.parametrize("bad", ["method.batches=0", "method.batches=1.5"])
def test_bad_knobs_fail_with_the_key(bad):
    from flipout_repro.config.validate import validate
    from flipout_repro.errors import ConfigError
    with pytest.raises(ConfigError, match="method.batches"):
        validate(make_cfg("experiment=quickstart", "method=snip", bad))


def test_snip_runs_at_initialisation_on_the_bundled_subset(quick_cfg):
    summary = run(quick_cfg("method=snip", "epochs=2"))
    assert summary["achieved_sparsity"] == pytest.approx(0.99, abs=1 / summary["prunable"])
    assert summary["config"]["schedule"]["name"] == "one_shot" and not summary["sparsity_is_outcome"]
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    [prune] = [r for r in records if r["type"] == "prune"]
    assert prune["step"] == 0 and prune["sparsity"] == pytest.approx(0.99, abs=1e-5)
    assert all(r["sparsity"] == pytest.approx(0.99, abs=1e-5) for r in records if r["type"] == "epoch")


@pytest.mark.slow
def test_cli_method_snip_needs_no_extra_arguments(tmp_path):
    r = run_cli("experiment=quickstart", "method=snip", "method.reference_quirks=true", "epochs=1", "sparsity=0.99",
                "progress=false", "device=cpu", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    [path] = list(tmp_path.glob("runs/**/summary.json"))
    summary = json.loads(path.read_text())
    # the quickstart counts as the reference code: SNIP keeps int(338,200 x 0.01) = 3,382 weights
    assert summary["method"] == "snip" and summary["nonzero"] == 3_382
