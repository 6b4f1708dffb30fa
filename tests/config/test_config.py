"""Validation of composed configs: each bad value names the key, the value and the fix."""
import pytest

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError

CASES = [
    (["sparsity=99.6"], "sparsity=99.6 must be in [0, 1): did you mean 0.996?"),
    (["sparsity=1.0"], "sparsity=1.0 must be in [0, 1): 1 would prune every weight; e.g. sparsity=0.996"),
    (["sparsity=-0.5"], "sparsity=-0.5 must be in [0, 1): e.g. sparsity=0.996"),
    (["epochs=0"], "epochs=0 must be in [1, inf)"),
    (["seed=-1"], "seed=-1 must be in [0, 4294967296)"),
    (["batch_size=0"], "batch_size=0 must be in [1, inf)"),
    (["device=tpu"], "device='tpu' is not supported: use auto, cpu, cuda or cuda:N"),
    (["optim.lr=0"], "optim.lr=0.0 must be in (0, inf)"),
    (["optim.momentum=1.5"], "optim.momentum=1.5 must be in [0, 1)"),
    (["optim.weight_decay=-1"], "optim.weight_decay=-1.0 must be in [0, inf)"),
    (["optim.milestones=[250,150]"], "optim.milestones=[250, 150] must be increasing positive epochs"),
    (["experiment=quickstart", "model=vgg19", "dataset.resize=null", "dataset.image_size=28"],
     "model='vgg19' needs images of at least 32x32"),
    (["experiment=quickstart", "model=densenet121", "dataset.resize=null", "dataset.image_size=28"],
     "model='densenet121' needs images of at least 32x32"),
    (["experiment=quickstart", "dataset.resize=0"], "dataset.resize=0 must be in [1, inf)"),
    (["experiment=quickstart", "dataset.resize=28"], "dataset.resize=28 differs from dataset.image_size=32"),
    (["epochs=4"], "epochs=4 is too short for the schedule"),
    (["schedule.rate=1.5"], "schedule.rate=1.5 must be in (0, 1)"),
    (["method.p=0"], "method='flipout' is invalid: method.p=0 must be > 0"),
    (["method.noise=-1"], "method.noise=-1 must be >= 0"),
    (["budget.name=row"], "budget='row' is not a budget (one of global, uniform, erk)"),
]

MORE_CASES = [
    (["+lr=0.1"], "lr=0.1 is not a config key: did you mean optim.lr?"),
    (["+optim.lr_decay=0.5"], "optim.lr_decay=0.5 is not a config key: did you mean optim.gamma?"),
    (["+quantization.bits=4"], "quantization.bits=4 is not a config key"),
    (["+method.temperature=2"], "method='flipout' got an argument it does not take"),
    (["optim.gamma=0"], "optim.gamma=0.0 must be in (0, 1]"),
    (["eval_batch_size=-5"], "eval_batch_size=-5 must be in [1, inf)"),
    (["method._target_=flipout_repro.methods.nope.Nope"], "cannot be imported: check the module path"),
    (["quantization.observer=l2"], "quantization.observer='l2' is not a valid choice: use one of minmax"),
    (["quantization.calibration_batches=0"], "quantization.calibration_batches=0 must be a positive integer"),
    (["channels_last=yes"], "channels_last='yes' is not a valid choice: use one of auto, true, false"),
    (["optim.schedule=linear"], "optim.schedule='linear' is not a valid choice: use one of step, cosine"),
    (["optim.warmup_epochs=-1"], "optim.warmup_epochs=-1 must be in [0, inf): e.g. optim.warmup_epochs=5"),
    (["optim.warmup_epochs=350"], "optim.warmup_epochs=350 must be below epochs=350: e.g. optim.warmup_epochs=17"),
    (["loss.label_smoothing=1.0"], "loss.label_smoothing=1.0 must be in [0, 1): e.g. loss.label_smoothing=0.1"),
    (["loss.label_smoothing=-0.1"], "loss.label_smoothing=-0.1 must be in [0, 1)"),
    (["+loss.smoothing=0.1"], "loss.smoothing=0.1 is not a config key: did you mean loss.label_smoothing?"),
    (["model.init=xavier"], "model.init='xavier' is not a valid choice: use one of default, kaiming_normal"),
]


@pytest.mark.parametrize("overrides, message", CASES + MORE_CASES)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert message in str(err.value)


# The schema (schema.RunConfig) refuses unknown keys and wrong types while Hydra composes the config.
SCHEMA_CASES = [
    (["sparsity=high"], "Value 'high' of type 'str' could not be converted to Float"),
    (["epochs=2.5"], "Value '2.5' of type 'float' could not be converted to Integer"),
    (["epochs=abc"], "Value 'abc' of type 'str' could not be converted to Integer"),
    (["deterministic=maybe"], "Value 'maybe' is not a valid bool"),
    (["dataset.mean=red"], "mean"),
    (["optim.warmup_epochs=2.5"], "Value '2.5' of type 'float' could not be converted to Integer"),
    (["loss.label_smoothing=lots"], "Value 'lots' of type 'str' could not be converted to Float"),
]


@pytest.mark.parametrize("overrides, message", SCHEMA_CASES)
def test_the_schema_refuses_unknown_keys_and_wrong_types(overrides, message):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        make_cfg(*overrides)
    text = str(err.value) + " " + str(err.value.__cause__)
    assert overrides[0].lstrip("+").split("=")[0].split(".")[-1] in text and message in text


def test_paper_defaults_are_valid():
    cfg = make_cfg("method=flipout", "sparsity=0.996")
    validate(cfg)
    assert (cfg.model.name, cfg.dataset.name, cfg.epochs, cfg.batch_size) == ("vgg19", "cifar10", 350, 128)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 0.0005)
    assert list(cfg.optim.milestones) == [150, 250] and cfg.optim.milestones_of == 350


def test_dense_ignores_sparsity_but_still_checks_it():
    from flipout_repro.config.targets import effective_sparsity

    assert effective_sparsity(make_cfg("method=dense", "sparsity=0.9")) == 0.0
    with pytest.raises(ConfigError, match="did you mean 0.9"):
        validate(make_cfg("method=dense", "sparsity=90"))


def test_a_gpu_index_beyond_the_visible_ones_is_named(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"device='cuda:2' is not there: 2 GPU\(s\) are visible: use cuda:0 to cuda:1"):
        validate(make_cfg("device=cuda:2"))
    validate(make_cfg("device=cuda:1"))
