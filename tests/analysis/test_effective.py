"""Effective sparsity: kept weights that no input-output path runs through count as pruned (hand counts on
small networks with a dead unit, a residual path and a max pool)."""
import pytest
import torch
from torch import nn

from flipout_repro.analysis.layers import effective_masks, layer_report
from flipout_repro.sparsity.masking import Masks, prunable_weights


def masks_of(model: nn.Module, values: list[torch.Tensor]) -> Masks:
    named = prunable_weights(model)
    return Masks([n for n, _ in named], [p for _, p in named], [v.float() for v in values])


def test_a_unit_with_no_input_and_a_unit_with_no_output_carry_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    m1 = torch.tensor([[0, 0, 0, 0],    # hidden unit 0: no kept weight in (its bias is no path from the input)
                       [1, 1, 0, 1],    # hidden unit 1: reaches the output
                       [1, 1, 1, 1]])   # hidden unit 2: no kept weight out (below)
    m2 = torch.tensor([[1, 1, 0],
                       [1, 0, 0]])
    masks = masks_of(net, [m1, m2])
    e1, e2 = effective_masks(net, masks, (4,))
    assert e1.tolist() == [[False] * 4, [True, True, False, True], [False] * 4]
    assert e2.tolist() == [[False, True, False], [False, False, False]]
    report = layer_report(net, masks, (4,))
    # kept 3 + 4 (layer 1) + 3 (layer 2) = 10 of 18; effective 3 + 1 = 4 of 18
    assert report["sparsity"] == pytest.approx(8 / 18)
    assert report["effective"] == 4 and report["effective_sparsity"] == pytest.approx(14 / 18)
    assert report["layers"]["0.weight"]["effective"] == 3 and report["layers"]["2.weight"]["effective"] == 1
    assert net[0].weight.grad is None and not torch.equal(net[0].weight, torch.ones_like(net[0].weight))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner1, self.inner2, self.out = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.out(torch.relu(self.inner2(torch.relu(self.inner1(x)))) + x)


def test_a_residual_path_keeps_the_layer_after_a_pruned_branch_effective():
    net = Residual()
    masks = masks_of(net, [torch.zeros(3, 3), torch.ones(3, 3), torch.tensor([[1, 0, 1], [0, 0, 1]])])
    e1, e2, e3 = effective_masks(net, masks, (3,))
    assert not e1.any() and not e2.any()  # the branch's second layer reads nothing
    assert e3.tolist() == [[True, False, True], [False, False, True]]  # the skip feeds the output layer
    assert layer_report(net, masks, (3,))["effective_sparsity"] == pytest.approx(1 - 3 / 24)  # 3 of 9 + 9 + 6


def test_every_input_of_a_max_pool_window_counts():
    # two units pooled into one by a max: with equal values a max reads one of them, but either can carry
    net = nn.Sequential(nn.Linear(2, 2), nn.Unflatten(1, (1, 2)), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(1, 1))
    masks = masks_of(net, [torch.ones(2, 2), torch.ones(1, 1)])
    e1, e2 = effective_masks(net, masks, (2,))
    assert e1.all() and e2.all()
    assert isinstance(net[2], nn.MaxPool1d)  # the model itself is untouched


def test_batchnorm_and_convolutions_with_a_dead_channel():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(2, 1, 1), nn.Flatten(), nn.Linear(4, 3))
    net[1].running_mean.fill_(5.0)  # statistics that would zero the channel are not what counts
    c1 = torch.ones(2, 1, 3, 3)
    c1[1] = 0  # channel 1 receives nothing: the 1x1 conv's weight reading it carries nothing
    masks = masks_of(net, [c1, torch.ones(1, 2, 1, 1), torch.ones(3, 4)])
    e1, e2, e3 = effective_masks(net, masks, (1, 4, 4))
    assert int(e1.sum()) == 9 and e2.flatten().tolist() == [True, False] and e3.all()


def test_a_run_records_its_effective_sparsity_and_the_report_shows_it(quick_cfg, tmp_path):
    import json

    from flipout_repro.cli.report import main as report_main
    from flipout_repro.run import run

    summary = run(quick_cfg("epochs=1", "sparsity=0.999", "method=random", "schedule=one_shot", "schedule.epoch=0"))
    stored = json.loads((tmp_path / summary["run_dir"] / "summary.json").read_text())
    layers = stored["layers"]
    assert stored["effective_sparsity"] == pytest.approx(1 - sum(v["effective"] for v in layers.values())
                                                         / stored["prunable"])
    # random at 99.9 % on LeNet-300-100 leaves units with no kept weight in or out: their weights carry nothing
    assert stored["effective_sparsity"] > stored["achieved_sparsity"]
    assert all(v["effective"] <= v["remaining"] for v in layers.values())
    report_main(["--results-dir", str(tmp_path), "--out", str(tmp_path / "tables")])
    table = (tmp_path / "tables" / "tables" / "lenet300_100-mnist5k.md").read_text()
    assert "| effective sparsity |" in table and "Effective sparsity (shown where" in table
