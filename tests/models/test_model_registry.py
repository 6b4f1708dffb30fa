"""The config group is the registry for models too: every conf/model file composes, builds on 32x32 RGB
images, runs, exports a state dict that loads into a fresh build, and (slow) quantizes to int8 with its
pruned zeros intact."""
from pathlib import Path

import pytest
import torch

from helpers import make_cfg
from flipout_repro.analysis.export import plain_state_dict
from flipout_repro.analysis.quantize import QuantSettings, check_zeros, quantize_model
from flipout_repro.config.validate import validate
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.config.paths import config_dir
from flipout_repro.training.build import build_model

MODELS = sorted(p.stem for p in Path(config_dir(), "model").glob("*.yaml"))


def test_the_seed_paper_models_are_registered():
    assert {"vgg19", "vgg16", "vgg19_force", "resnet18", "resnet50", "resnet50_cifar", "densenet121"} <= set(MODELS)


def built(name):
    cfg = make_cfg(f"model={name}", "dataset=cifar100")
    validate(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, 3, 100, 32)
    return cfg, model, Masks.for_model(model)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_builds_runs_and_exports(name):
    cfg, model, masks = built(name)  # unpruned: prune_to on 25M weights costs seconds; the slow test prunes
    assert cfg.model.name == name
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 100) and torch.isfinite(out).all()
    fresh = build_model(cfg.model, 3, 100, 32).eval()
    fresh.load_state_dict(plain_state_dict(model, masks))
    with torch.no_grad():
        assert torch.equal(fresh(x), out)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_model_quantizes_with_its_zeros(name):
    _, model, masks = built(name)
    prune_to([w.detach().abs() for w in masks.params], masks, 0.9)
    settings = QuantSettings(observer="minmax", calibration_batches=1)
    qmodel = quantize_model(model, iter([torch.randn(4, 3, 32, 32)]), settings)
    z = check_zeros(qmodel, masks)
    assert z["zeros_preserved"] and z["not_quantized"] == [] and z["pruned_nonzero"] == 0
