"""A run's identity: protocol + axes, written as group names and the values that differ from the defaults."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers import make_cfg
from flipout_repro.config.identity import differences, identity, stored_identity
from flipout_repro.config.targets import prepare

QUICK = ("experiment=quickstart",)


def ident(*overrides):
    cfg, _ = prepare(make_cfg(*QUICK, *overrides))
    return identity(cfg)


def test_the_quickstart_by_hand():
    i = ident()
    assert i.protocol == {"model": {"name": "lenet300_100"}, "dataset": {"name": "mnist5k"},
                          "optim": {"name": "sgd"}, "epochs": 40, "batch_size": 128, "precision": "fp32"}
    assert i.axes == {"method": {"name": "flipout"}, "schedule": {"name": "periodic", "rounding": "reference"},
                      "sparsity": 0.99609375, "budget": {"name": "global"}, "pattern": {"name": "unstructured"}}
    assert i.seed == 0
    assert i.protocol_label() == "lenet300_100 on mnist5k, 40 epochs, batch 128, fp32"
    assert i.axes_label(with_sparsity=True) == \
        "flipout, schedule=periodic, schedule.rounding=reference, sparsity=0.99609375"
    assert i.folder("R") == Path("R/runs/lenet300_100-mnist5k/flipout/sparsity_0.99609375") / i.hash / "seed_0"


def test_values_away_from_the_defaults_are_named_where_they_belong():
    i = ident("optim.lr=0.05", "epochs=10", "method.p=3", "budget=erk", "seed=4", "loss.label_smoothing=0.1")
    assert i.protocol["optim"] == {"name": "sgd", "lr": 0.05} and i.protocol["epochs"] == 10
    assert i.protocol["loss"] == {"label_smoothing": 0.1}
    assert i.axes["method"] == {"name": "flipout", "p": 3} and i.axes["budget"] == {"name": "erk"}
    assert i.seed == 4 and i.hash == ident("optim.lr=0.05", "epochs=10", "method.p=3", "budget=erk",
                                           "loss.label_smoothing=0.1").hash  # the seed is its own folder
    assert differences(i, ident()) == ["epochs", "loss.label_smoothing", "optim.lr"]
    assert differences(i, ident(), "axes") == ["budget.name", "method.p"]


def test_a_default_spelled_out_and_what_does_not_change_the_computation_leave_the_identity_alone():
    base = ident()
    for same in (["optim.lr=0.1"], ["method.p=2"], ["model.init=default"], ["dataset.train_fraction=1.0"],
                 ["budget=global"], ["pattern=unstructured"], ["precision=fp32"], ["device=cpu"],
                 ["results_dir=/elsewhere"], ["eval_batch_size=7"], ["on_collapse=stop"], ["quantize=true"],
                 ["dataset.root=/data"], ["progress=false"]):
        assert ident(*same).hash == base.hash, same


def test_module_paths_are_not_part_of_it():
    cfg, _ = prepare(make_cfg(*QUICK))
    moved = OmegaConf.to_container(cfg, resolve=True)
    moved["method"]["_target_"] = "flipout_repro.elsewhere.FlipOut"
    moved["model"]["_target_"] = "somewhere.else.LeNet"
    assert identity(moved).hash == identity(cfg).hash


def test_a_knob_the_stored_config_lacks_holds_its_default():
    """A run written before a knob existed: its config.yaml has no such key, and the run is the one at the
    knob's default (here schedule.rounding, method knobs and the loss section)."""
    cfg, _ = prepare(make_cfg(*QUICK, "schedule.rounding=exact", "method=force"))
    old = OmegaConf.to_container(cfg, resolve=True)
    del old["schedule"]["rounding"], old["method"]["cut"], old["method"]["init"], old["loss"]
    assert stored_identity(old).hash == identity(cfg).hash


def test_the_methods_own_budget_and_schedule():
    """A method's own budget and schedule come from its yaml; its own schedule is not named."""
    assert make_cfg("method=rigl").budget.name == "uniform"  # conf/method/rigl.yaml
    assert ident("method=rigl").axes["budget"] == {"name": "global"}  # the quickstart states budget=global
    assert ident("method=rigl", "budget=uniform").axes["budget"] == {"name": "uniform"}
    assert ident("method=global_magnitude").hash == ident("method=global_magnitude", "budget=global").hash
    assert ident("method=snip", "schedule.rounding=exact").axes.get("schedule") is None  # one_shot: its own
    assert ident("method=global_magnitude", "schedule=one_shot").axes["schedule"] == \
        {"name": "one_shot", "rounding": "reference"}


def test_methods_share_a_protocol_and_a_protocol_change_is_seen():
    assert len({ident(f"method={m}").protocol_hash for m in ("flipout", "snip", "rigl", "dense", "str")}) == 1
    assert ident("epochs=10").protocol_hash != ident().protocol_hash
    assert ident("method=dense", "sparsity=0.5").axes["sparsity"] == 0  # a dense run has no sparsity


@pytest.mark.parametrize("stored, summary, expected", [("auto", {}, "fp32"), ("auto", {"precision": "bf16"}, "bf16"),
                                                      ("bf16", {}, "bf16"), ("fp32", {}, "fp32")])
def test_precision_as_a_run_folder_records_it(stored, summary, expected):
    cfg, _ = prepare(make_cfg(*QUICK))
    d = OmegaConf.to_container(cfg, resolve=True)
    d["precision"] = stored
    assert stored_identity(d, summary).protocol["precision"] == expected
