"""loss.label_smoothing and model.init by hand, the four knobs at their defaults add nothing to run hashes, and STR's
recipe runs end to end through the CLI."""
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from helpers import make_cfg, run_cli
from flipout_repro.config.defaults import completed
from flipout_repro.data import TensorData
from flipout_repro.sparsity.masking import Masks
from flipout_repro.methods.dense import Dense
from flipout_repro.models.weight_init import initialize
from helpers import run_hash
from flipout_repro.training.build import build_model
from flipout_repro.training.evaluate import evaluate
from flipout_repro.training.trainer import Trainer


def two_class_trainer(label_smoothing):
    """Logits [ln 3, 0] for every input: p = (0.75, 0.25)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor([math.log(3.0), 0.0]))
    masks = Masks.for_model(net)
    method = Dense()
    method.bind(net, masks)
    x, y = torch.zeros(4, 1, 1, 2), torch.zeros(4, dtype=torch.long)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    images = x.to(torch.uint8)
    data = TensorData(images, y, images, y, torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    return Trainer(net, data, method, masks, opt, torch.optim.lr_scheduler.MultiStepLR(opt, [9]), [], 1, 0.0,
                   4, 4, torch.Generator(), progress=False, label_smoothing=label_smoothing), x, y


def test_label_smoothing_by_hand_and_evaluation_stays_plain():
    plain, x, y = two_class_trainer(0.0)
    assert plain.step(x, y)[0].item() == pytest.approx(-math.log(0.75))
    smooth, x, y = two_class_trainer(0.2)
    # targets (1 - 0.2) one-hot + 0.2 / 2: 0.9 (-ln 0.75) + 0.1 (-ln 0.25)
    assert smooth.step(x, y)[0].item() == pytest.approx(0.9 * -math.log(0.75) + 0.1 * -math.log(0.25))
    test_loss, _ = evaluate(smooth.model, smooth.data, 4)  # the test images are 0 too
    assert test_loss == pytest.approx(-math.log(0.75))


def test_kaiming_normal_by_hand():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(4, 5))
    torch.manual_seed(7)
    initialize(net, "kaiming_normal")
    torch.manual_seed(7)  # N(0, gain^2 / fan_in), gain sqrt(2) (relu), fan_in = 2*3*3 and 4, in module order
    conv = torch.empty(3, 2, 3, 3).normal_(0, math.sqrt(2 / 18))
    lin = torch.empty(5, 4).normal_(0, math.sqrt(2 / 4))
    assert torch.equal(net[0].weight, conv) and torch.equal(net[3].weight, lin)
    assert not net[0].bias.any() and not net[3].bias.any()  # biases start at 0
    assert torch.equal(net[1].weight, torch.ones(3)) and torch.equal(net[1].bias, torch.zeros(3))  # BN as built
    before = [p.clone() for p in net.parameters()]
    initialize(net, "default")
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # default: left alone


def test_every_model_gets_the_init_and_stored_configs_without_the_key_build_at_its_default():
    cfg = make_cfg("model=vgg19", "model.init=kaiming_normal")
    torch.manual_seed(0)
    model = build_model(cfg.model, 3, 10, 32)
    ws = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for w in ws[1:]:  # large layers: the sample std is within 3 % of sqrt(2 / fan_in)
        fan_in = w[0].numel()
        assert w.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    stored = OmegaConf.to_container(make_cfg("model=resnet18"), resolve=True)
    del stored["model"]["init"]  # a config.yaml written before model.init existed
    old = OmegaConf.create(completed(stored)["model"])  # as a finished run is read back (config/defaults.py)
    assert old.init == "default"
    torch.manual_seed(0)
    a = build_model(old, 3, 10, 32)
    torch.manual_seed(0)
    b = build_model(make_cfg("model=resnet18").model, 3, 10, 32)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("neutral", ["optim.schedule=step", "optim.warmup_epochs=0", "loss.label_smoothing=0.0",
                                     "model.init=default"])
def test_new_knobs_at_their_neutral_value_leave_the_hash_alone(neutral):
    base = make_cfg("method=flipout")
    assert run_hash(make_cfg("method=flipout", neutral)) == run_hash(base)


@pytest.mark.parametrize("other", ["optim.schedule=cosine", "optim.warmup_epochs=5", "loss.label_smoothing=0.1",
                                   "model.init=kaiming_normal"])
def test_new_knobs_away_from_neutral_change_the_hash(other):
    assert run_hash(make_cfg("method=flipout", other)) != run_hash(make_cfg("method=flipout"))


def test_strs_recipe_end_to_end_through_the_cli(tmp_path):
    r = run_cli("experiment=quickstart", "optim.schedule=cosine", "optim.warmup_epochs=2", "loss.label_smoothing=0.1",
                "model.init=kaiming_normal", "method=str", "epochs=4", "progress=false", "device=cpu",
                f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    [summary] = tmp_path.glob("runs/**/summary.json")
    records = [json.loads(x) for x in (summary.parent / "metrics.jsonl").read_text().splitlines()]
    lrs = [rec["lr"] for rec in records if rec["type"] == "epoch"]
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.05])  # quickstart lr 0.1: warm-up 1/2, 2/2, cosine 1, 1/2
    cfg = json.loads(Path(summary).read_text())["config"]
    assert cfg["loss"]["label_smoothing"] == 0.1 and cfg["model"]["init"] == "kaiming_normal"
    assert cfg["method"]["s_init"] == -3200.0
    assert json.loads(summary.read_text())["achieved_sparsity"] == 0.0  # s = -3200 moves by weight decay only
