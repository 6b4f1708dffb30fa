"""Values that become paths, ``_target_`` outside the package, NaN and
infinity, booleans spelled otherwise than true/false, and the keys no check reached; every one refused
before anything is written, with the key, the value and a fix that works."""
import json
import pytest

from helpers import make_cfg
from flipout_repro.config import schema
from flipout_repro.config.optimizers import OPTIMIZERS
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.config.schema import key_paths

QUICK = ["experiment=quickstart", "device=cpu", "progress=false"]


@pytest.mark.parametrize("override, key", [
    ("method.name=../../../../x", "method.name"),
    ("model.name=a/b", "model.name"),
    ("dataset.name=..", "dataset.name"),
    ("method.name=", "method.name"),
    ("model.name=.hidden", "model.name"),
])
def test_values_that_become_path_components_must_be_plain_names(tmp_path, override, key):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*QUICK, f"results_dir={tmp_path}", override))
    assert str(err.value).startswith(f"{key}=") and "letters, digits" in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("overrides", [
    ["method._target_=subprocess.run", "+method.args=[touch,{marker}]"],
    ["model._target_=subprocess.run", "+model.args=[touch,{marker}]"],
    ["schedule._target_=subprocess.run", "+schedule.args=[touch,{marker}]"],
    ["method._target_=flipout_repro.methods.base.torch.load", "+method.f={marker}"],
    ["method._target_=flipout_repro.models.lenet.LeNet5"],  # in the package, but not a method
    ["method._target_=flipout_repro.sparsity.schedule.Periodic"],
    ["schedule._target_=flipout_repro.methods.flipout.FlipOut"],
])
def test_target_must_name_a_class_of_the_packages_methods_models_or_schedules(tmp_path, overrides):
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*QUICK, *[o.format(marker=marker) for o in overrides]))
    group = overrides[0].split(".")[0]
    assert f"{group}._target_=" in str(err.value) and "is not allowed" in str(err.value)
    assert not marker.exists()


def test_a_run_folders_config_cannot_run_code_either(tmp_path):
    from flipout_repro.analysis.finished_run import RunFolderError, load_run

    from omegaconf import OmegaConf

    marker = tmp_path / "ran"
    run = tmp_path / "run"
    run.mkdir()
    cfg = make_cfg(*QUICK)
    OmegaConf.set_struct(cfg, False)
    cfg.model = {"_target_": "subprocess.run", "args": ["touch", str(marker)], "name": "lenet300_100"}
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    for name in ("model.pt", "checkpoint.pt", "masks.pt"):
        (run / name).write_text("{}")
    (run / "summary.json").write_text(json.dumps({  # a summary as its typed definition wants it
        "model": "lenet300_100", "dataset": "mnist5k", "method": "flipout", "seed": 0, "target_sparsity": 0.5,
        "config": {}, "status": "completed", "final_test_acc": 90.0}))
    with pytest.raises(RunFolderError, match="model._target_='subprocess.run' is not allowed"):
        load_run(run, with_data=False)
    assert not marker.exists()


FLOAT_KEYS = ["sparsity", "optim.lr", "optim.momentum", "optim.weight_decay", "optim.gamma", "optim.betas",
              "optim.eps", "loss.label_smoothing", "dataset.mean", "dataset.std", "dataset.train_fraction",
              "optim.norm_lr_scale", "optim.norm_weight_decay"]
#: the groups of the schema, with their prefixes: the top level, every optimiser, loss and dataset
SECTIONS = [(schema.RunConfig, ""), *[(spec.schema, "optim.") for spec in OPTIMIZERS.values()],
            (schema.LossConfig, "loss."), (schema.DatasetConfig, "dataset.")]


def test_every_float_key_of_the_schema_is_in_this_list():
    floats = {prefix + name for cls, prefix in SECTIONS for name, f in cls.__dataclass_fields__.items()
              if "float" in str(f.type)}
    assert sorted(floats) == sorted(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_every_float_key_refuses_nan_and_infinity(key, bad):
    value = f"[{bad}]" if key in ("dataset.mean", "dataset.std") else f"[0.9,{bad}]" if key == "optim.betas" else bad
    optim = ["optim=adamw"] if key in ("optim.betas", "optim.eps") else []
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*QUICK, *optim, f"{key}={value}"))
    assert str(err.value).startswith(f"{key}=") and "finite number" in str(err.value)


@pytest.mark.parametrize("overrides, key", [
    (["method.p=nan"], "method.p"),
    (["method.noise=inf"], "method.noise"),
    (["method=hoyer_square", "method.lam=nan"], "method.lam"),
    (["method=hoyer_square", "method.threshold=inf"], "method.threshold"),
    (["method=weightmom", "method.horizon_epochs=nan"], "method.horizon_epochs"),
    (["method=weightmom", "method.layer_importance=inf"], "method.layer_importance"),
    (["method=str", "method.s_init=nan"], "method.s_init"),
    (["method=str", "method.s_weight_decay=inf"], "method.s_weight_decay"),
    (["schedule.rate=nan"], "schedule.rate"),
    (["schedule=one_shot", "schedule.epoch=nan"], "schedule.epoch"),
    (["schedule=cubic", "schedule.end=nan"], "schedule.end"),
    (["schedule=cubic", "schedule.initial_sparsity=nan"], "schedule.initial_sparsity"),
])
def test_method_and_schedule_knobs_refuse_nan_and_infinity(overrides, key):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*QUICK, *overrides))
    assert str(err.value).startswith(f"{key}=") and "must be a finite number" in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    (["method=snip", "method.reference_quirks=maybe"], "method.reference_quirks='maybe' must be true or false"),
    (["method=snip", "method.reference_quirks=1"], "method.reference_quirks=1 must be true or false"),
    (["method.p=abc"], "method.p='abc' must be a number"),
    (["method=force", "method.steps=2.5"], "method.steps=2.5 must be an integer"),
    (["schedule.frequency=true"], "schedule.frequency=True must be an integer"),
])
def test_method_and_schedule_knobs_are_typed_by_their_constructor(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(make_cfg(*QUICK, *overrides))


BOOL_KEYS = ["resume", "progress", "compile", "deterministic", "quantize", "optim.nesterov", "dataset.download",
             "dataset.flip", "dataset.verify", "dataset.flip_alternate", "dataset.drop_last"]


def test_every_bool_key_of_the_schema_is_in_this_list():
    bools = {prefix + n for cls, prefix in SECTIONS for n, f in cls.__dataclass_fields__.items()
             if str(f.type) == "bool"}
    assert sorted(bools) == sorted(BOOL_KEYS)


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("spelling", ["no", "yes", "on", "off", "0", "1", "y"])
def test_bool_keys_take_only_true_or_false(key, spelling):
    with pytest.raises(ConfigError) as err:
        make_cfg(*QUICK, f"{key}={spelling}")
    assert str(err.value).startswith(f"{key}={spelling!r} must be true or false: use {key}=true or {key}=false")


@pytest.mark.parametrize("spelling", ["true", "false", "True", "FALSE"])
def test_true_and_false_are_fine(spelling):
    assert make_cfg(*QUICK, f"resume={spelling}").resume is (spelling.lower() == "true")


@pytest.mark.parametrize("overrides, message", [
    (["dataset.num_classes=0"], "dataset.num_classes=0 must be in [1, inf)"),
    (["dataset.crop_padding=-1"], "dataset.crop_padding=-1 must be in [0, inf)"),
    (["dataset.in_channels=0"], "dataset.in_channels=0 must be in [1, inf)"),
    (["dataset.image_size=0", "dataset.resize=null"], "dataset.image_size=0 must be in [1, inf)"),
    (["dataset.std=[0]"], "dataset.std=[0.0] must be positive"),
    (["optim.milestones=[20,400]", "optim.milestones_of=350"], "optim.milestones=[20, 400] must be below"
                                                                " optim.milestones_of=350"),
    (["optim.nesterov=true", "optim.momentum=0"], "optim.nesterov=True needs a momentum"),
    (["optim.name=adam"], "optim.name='adam' is not a valid choice: use one of sgd, adamw"),
    (["optim.name=adamw"], "optim.momentum=0.9 is not a key of optim=adamw: its keys: betas, eps, weight_decay,"),
    (["seed=4294967296"], "seed=4294967296 must be in [0, 4294967296)"),
    (["budget=uniform", "method=global_magnitude"], None),  # fine
])
def test_keys_that_no_check_reached(overrides, message):
    cfg = make_cfg(*QUICK, *overrides)
    if message is None:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_num_classes_below_the_labels_fails_before_the_run_folder_exists(tmp_path):
    from flipout_repro.run import run

    cfg = make_cfg(*QUICK, f"results_dir={tmp_path}", "dataset.num_classes=5", "epochs=2", "sparsity=0.5")
    with pytest.raises(ConfigError, match=r"dataset.num_classes=5 is below the labels of mnist5k \(10 classes"):
        run(cfg)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("overrides, message", [
    (["sparsity=1.0"], "sparsity=1.0 must be in [0, 1): 1 would prune every weight; e.g. sparsity=0.996"),
    (["sparsity=100"], "sparsity=100.0 must be in [0, 1): e.g. sparsity=0.996"),
    (["schedule.rate=1.5"], "schedule.rate=1.5 must be in (0, 1)"),
    (["schedule=cubic", "schedule.start=0.6", "schedule.end=0.5"], "schedule.start=0.6 must be below schedule.end=0.5"),
    (["schedule=one_shot", "schedule.epoch=-1"], "schedule.epoch=-1 must be in [0, epochs=40)"),
    (["schedule=cubic", "schedule.every_epochs=0"], "schedule.every_epochs=0 must be in [1, inf)"),
    (["schedule=cubic", "schedule.initial_sparsity=0.999"], "schedule.initial_sparsity=0.999 must be in"
                                                             " [0, sparsity=0.99609375]"),
])
def test_messages_name_the_key_at_fault(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*QUICK, *overrides))
    assert message in str(err.value) and "did you mean 0.01" not in str(err.value)
    assert "epochs=40 is too short" not in str(err.value)


def test_an_interpolation_that_does_not_resolve_is_a_config_error():
    with pytest.raises(ConfigError, match=r"epochs='\$\{nope\}' cannot be resolved"):
        validate(make_cfg(*QUICK, "epochs=${nope}"))


def test_results_dir_must_be_a_writable_folder(tmp_path, monkeypatch):
    import os

    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="results_dir=.* is not a folder"):
        validate(make_cfg(*QUICK, f"results_dir={tmp_path / 'file'}"))
    with pytest.raises(ConfigError, match="results_dir=.* is not a folder"):
        validate(make_cfg(*QUICK, f"results_dir={tmp_path / 'file' / 'below'}"))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(tmp_path) else real(p, m))
    with pytest.raises(ConfigError, match="results_dir=.* is not writable"):
        validate(make_cfg(*QUICK, f"results_dir={tmp_path / 'new' / 'results'}"))


def test_the_schema_lists_only_keys_checked_here():
    """A key added to the schema needs a check (and a line in this file's lists)."""
    checked = set(FLOAT_KEYS) | set(BOOL_KEYS) | {
        "model", "dataset", "schedule", "method", "epochs", "seed", "device", "batch_size", "eval_batch_size",
        "precision", "channels_last", "results_dir", "quantization.observer", "quantization.calibration_batches",
        "quantization.backend", "optim.name", "optim.milestones", "optim.milestones_of", "optim.schedule",
        "optim.warmup_epochs", "dataset.name", "dataset.root", "dataset.in_channels", "dataset.image_size",
        "dataset.num_classes", "dataset.crop_padding", "dataset.resize", "dataset.workers", "dataset.eval_resize",
        "optim", "on_collapse",
        "logger",  # tests/training/test_trackers.py
        "dataset.decode",  # tests/data/test_jpeg_device.py
        "parent.run", "parent.hash",  # tests/training/test_derived_runs.py
        # the airbench protocol's keys (tests/config/test_airbench_sweep.py, tests/data/test_airbench_augment.py)
        "loss.reduction", "dataset.crop_fill", "optim.lookahead_every", "tta",
        # budget= and pattern= (tests/training/test_axes_runs.py)
        "budget.name", "budget.dense_first", "budget.dense_last", "pattern.name", "pattern.n", "pattern.m"}
    assert set(key_paths()) <= checked, set(key_paths()) - checked


def test_nothing_is_written_for_a_nan_learning_rate(tmp_path):
    from flipout_repro.run import run

    with pytest.raises(ConfigError):
        run(make_cfg(*QUICK, f"results_dir={tmp_path}", "optim.lr=nan"))
    assert not any(tmp_path.iterdir())
