"""The config groups are the registry: every conf/method and conf/schedule file composes, validates,
builds, binds to a model and scores it (or has events), with no training."""
from pathlib import Path

import pytest
import torch

from helpers import make_cfg
from flipout_repro.config.paths import config_dir
from flipout_repro.config.validate import instantiate, validate
from flipout_repro.sparsity.masking import Masks
from flipout_repro.models.lenet import LeNet300100

METHODS = sorted(p.stem for p in Path(config_dir(), "method").glob("*.yaml"))
SCHEDULES = sorted(p.stem for p in Path(config_dir(), "schedule").glob("*.yaml"))


def test_the_seed_papers_methods_and_schedules_are_registered():
    assert {"snip", "iter_snip", "force", "grasp", "synflow", "hoyer_square", "group_hoyer_square", "str",
            "weightmom"} <= set(METHODS)
    assert {"periodic", "one_shot", "cubic", "none"} <= set(SCHEDULES)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_builds_binds_and_scores(name):
    cfg = make_cfg("experiment=quickstart", f"method={name}")
    validate(cfg)
    method = instantiate(cfg.method, "method")
    assert method.name == name
    torch.manual_seed(0)
    model = LeNet300100()
    masks = Masks.for_model(model)
    method.bind(model, masks)
    batches = iter([(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 2)
    if hasattr(method, "steps"):
        method.steps = 2  # keep FORCE / Iterative SNIP cheap here
    if hasattr(method, "rounds"):
        method.rounds = 2  # and SynFlow
    if hasattr(method, "samples_per_class"):  # GraSP: every class in the two batches below
        method.samples_per_class = 1
        batches = iter([(torch.randn(10, 1, 28, 28), torch.arange(10))] * 2)
    method.on_train_start(batches, 0.9, 10, 2)
    if getattr(method, "from_parent", False):  # its mask comes from its parent (tests/training/test_derived_runs.py)
        with pytest.raises(NotImplementedError, match="from its parent"):
            method.scores(model)
    elif method.prunes:
        scores = method.scores(model)
        assert [s.shape for s in scores] == [p.shape for p in masks.params]
        assert all(torch.isfinite(s).all() for s in scores)


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_has_valid_events(name):
    schedule = instantiate(make_cfg("experiment=quickstart", f"schedule={name}").schedule, "schedule")
    events = schedule.events(0.99, 40, 32)
    assert [e.step for e in events] == sorted(e.step for e in events)
    assert all(0 <= e.step < 40 * 32 and 0 < e.sparsity <= 0.99 for e in events)
    if events:
        assert events[-1].sparsity == 0.99
