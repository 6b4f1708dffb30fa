"""The optimiser registry (config/optimizers.py): every entry builds through training.build, AdamW's update
by hand, and bad values refused with the key, the value and a fix."""
import math
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from torch import nn

from helpers import REPO, make_cfg
from flipout_repro.config.optimizers import OPTIMIZERS, arguments
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.training.build import build_optimizer

QUICK = ["experiment=quickstart", "device=cpu", "progress=false"]


def test_each_yaml_of_conf_optim_is_a_registered_optimiser_with_its_keys():
    names = sorted(p.stem for p in Path(REPO, "conf", "optim").glob("*.yaml"))
    assert names == sorted(OPTIMIZERS)
    for name in names:
        cfg = make_cfg(*QUICK, f"optim={name}")
        validate(cfg)
        assert cfg.optim.name == name and OmegaConf.get_type(cfg.optim) is OPTIMIZERS[name].schema


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimiser_builds_its_torch_class_with_its_keys(name):
    cfg = make_cfg(*QUICK, f"optim={name}", "optim.lr=0.02")
    opt, _ = build_optimizer(cfg, nn.Linear(3, 2))
    assert type(opt) is getattr(torch.optim, OPTIMIZERS[name].torch_class)
    group = opt.param_groups[0]
    for key, value in arguments(cfg.optim).items():
        assert group[key] == value, key
    assert group["lr"] == 0.02


def test_an_adamw_step_by_hand():
    """Two steps of torch's AdamW (Loshchilov & Hutter 2019, algorithm 2): decay the weights by lr x wd, then
    w -= lr m_t / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps), m and v the running means of g and g^2."""
    lr, (b1, b2), eps, wd = 0.1, (0.8, 0.9), 1e-3, 0.5
    cfg = make_cfg(*QUICK, "optim=adamw", f"optim.lr={lr}", f"optim.betas=[{b1},{b2}]", f"optim.eps={eps}",
                   f"optim.weight_decay={wd}")
    model = nn.Linear(2, 1, bias=False)
    twin = nn.Linear(2, 1, bias=False)
    start, grads = [1.0, -2.0], ([0.5, -4.0], [-1.0, 2.0])
    with torch.no_grad():
        model.weight.copy_(torch.tensor([start]))
        twin.weight.copy_(torch.tensor([start]))
    opt, _ = build_optimizer(cfg, model)
    reference = torch.optim.AdamW(twin.parameters(), lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    w, m, v = list(start), [0.0, 0.0], [0.0, 0.0]
    for t, g in enumerate(grads, start=1):
        for net, o in ((model, opt), (twin, reference)):
            net.weight.grad = torch.tensor([g])
            o.step()
        for i in range(2):
            w[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            w[i] -= lr * (m[i] / (1 - b1 ** t)) / (math.sqrt(v[i] / (1 - b2 ** t)) + eps)
        if t == 1:  # m / (1 - b1) = g and v / (1 - b2) = g^2: the step is lr g / (|g| + eps)
            assert w == pytest.approx([0.95 - 0.1 * 0.5 / 0.501, -1.9 + 0.1 * 4 / 4.001])
        assert model.weight[0].tolist() == pytest.approx(w, rel=1e-6)
        assert torch.equal(model.weight, twin.weight)


@pytest.mark.parametrize("overrides, message", [
    (["optim.betas=[0.9]"], "optim.betas=[0.9] must be two numbers in [0, 1): e.g. optim.betas=[0.9,0.999]"),
    (["optim.betas=[0.9,1.0]"], "optim.betas=[0.9, 1.0] must be two numbers in [0, 1)"),
    (["optim.betas=[0.9,0.99,0.999]"], "optim.betas=[0.9, 0.99, 0.999] must be two numbers in [0, 1)"),
    (["optim.eps=0"], "optim.eps=0.0 must be in (0, inf): e.g. optim.eps=1e-8"),
    (["optim.weight_decay=-0.01"], "optim.weight_decay=-0.01 must be in [0, inf): decoupled: e.g."),
    (["optim.lr=0"], "optim.lr=0.0 must be in (0, inf): e.g. optim.lr=0.1"),
    (["optim.warmup_epochs=40"], "optim.warmup_epochs=40 must be below epochs=40"),
    (["optim.name=sgd"], "optim.betas=[0.9, 0.999] is not a key of optim=sgd: its keys: momentum, weight_decay,"),
])
def test_bad_adamw_values_are_refused_with_key_value_and_fix(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*QUICK, "optim=adamw", *overrides))
    assert str(err.value).startswith(message)


def test_keys_of_another_optimiser_are_refused_while_composing():
    with pytest.raises(ConfigCompositionException, match="Could not override 'optim.momentum'"):
        make_cfg(*QUICK, "optim=adamw", "optim.momentum=0.9")
