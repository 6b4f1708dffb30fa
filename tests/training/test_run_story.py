"""A run folder that tells its own story: run.log and command.txt beside config.yaml, one
wording for where a run stopped and where it resumes, a layer collapse warned at its prune event and
``on_collapse=stop``, no .lock left in a finished run."""
import json
import logging
from pathlib import Path

import pytest

from helpers import stop_after
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from helpers import run_hash
from flipout_repro.run import run
from flipout_repro.training.collapse import LayerCollapsed
from flipout_repro.training.trainer import Trainer, TrainingInterrupted, TrainState, position

COLLAPSE = ("method=random", "sparsity=0.99999", "schedule=one_shot", "epochs=2")  # 3 weights of 338,200 kept


@pytest.fixture
def info_logs():
    """What flipout-train's console shows: the root logger at INFO (Hydra's job logging sets it so)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(level)


def run_folder(cfg) -> Path:
    [summary] = Path(cfg.results_dir).glob("runs/**/summary.json")
    return summary.parent


def test_position_names_the_same_place_in_every_message():
    assert position(TrainState(epoch=2, step=64)) == "step 64 (end of epoch 2)"
    assert position(TrainState(epoch=2, step=75, batch=11)) == "step 75 (epoch 3, batch 11)"


def test_run_log_and_command_txt_tell_each_attempt_and_a_stop_and_resume_say_the_same_place(
        quick_cfg, monkeypatch, info_logs):
    cfg = quick_cfg("epochs=3", "sparsity=0.75", "method=global_magnitude")
    original = stop_after(monkeypatch, 40)  # epoch 2 (32 steps an epoch), batch 8
    with pytest.raises(TrainingInterrupted) as exc:
        run(cfg, ["epochs=3", "method=global_magnitude"])
    where = "step 40 (epoch 2, batch 8)"
    assert f"stopped after {where}" in str(exc.value)
    [folder] = [p.parent for p in Path(cfg.results_dir).glob("runs/**/checkpoint.pt")]
    monkeypatch.setattr(Trainer, "step", original)
    summary = run(cfg, ["epochs=3", "method=global_magnitude", "progress=false"])

    log = (folder / "run.log").read_text()
    assert log.startswith("====") and ": started ====" in log.splitlines()[0]
    assert "(2 prune events)" in log  # periodic: 0.5, then 0.75
    first, second = log.split(": resumed from its checkpoint ====\n")
    assert "epoch 1/3" in first and f"interrupted: stopped after {where}" in first.splitlines()[-2]
    assert f"resuming {folder} after {where}" in second and "epoch 3/3" in second and "done: test" in second
    assert log.count("epoch 1/3") == 1  # the lines of each attempt once
    command = (folder / "command.txt").read_text().split("\n\n")
    assert ": started\n" in command[0] and "overrides: epochs=3 method=global_magnitude" in command[0]
    assert ": resumed from its checkpoint" in command[1] and "progress=false" in command[1]
    assert command[0].splitlines()[1].startswith("command: ")
    assert summary["status"] == "completed" and not (folder / ".lock").exists()  # finished: no lock left
    assert {"config.yaml", "run.log", "command.txt", "summary.json"} <= {p.name for p in folder.iterdir()}


def test_one_prune_event_is_singular(quick_cfg, caplog):
    with caplog.at_level(logging.INFO, logger="flipout_repro"):
        run(quick_cfg("epochs=1", "sparsity=0.5", "schedule=one_shot", "method=random"))
    assert any("(1 prune event)" in r.getMessage() for r in caplog.records)


def test_a_collapse_is_warned_at_its_prune_event(quick_cfg, caplog):
    with caplog.at_level(logging.INFO, logger="flipout_repro"):
        summary = run(quick_cfg(*COLLAPSE))
    messages = [r.getMessage() for r in caplog.records]
    warned = next(i for i, m in enumerate(messages) if "the prune event at epoch 0 (step 0) collapsed" in m)
    first_epoch = next(i for i, m in enumerate(messages) if m.startswith("epoch 1/2"))
    assert warned < first_epoch and caplog.records[warned].levelname == "WARNING"
    assert "on_collapse=stop ends a run here" in messages[warned]
    assert summary["status"] == "completed" and summary["collapsed_layers"]
    assert sum("collapsed" in m and r.levelname == "WARNING" for m, r in zip(messages, caplog.records)) == 1


def test_on_collapse_stop_ends_the_run_at_the_event_and_says_why(quick_cfg):
    cfg = quick_cfg(*COLLAPSE, "on_collapse=stop")
    with pytest.raises(LayerCollapsed, match=r"collapsed 2 layers: fc2.weight, fc3.weight .*on_collapse=stop ended"):
        run(cfg)
    folder = run_folder(cfg)
    s = json.loads((folder / "summary.json").read_text())
    assert (s["status"], s["stop_reason"], s["collapsed_layers"]) == ("failed", "layer_collapse",
                                                                      ["fc2.weight", "fc3.weight"])
    assert s["stopped_at"] == {"epoch": 0, "step": 0} and "on_collapse=stop ended the run there" in s["error"]
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == ["prune"]  # no epoch was trained
    assert not (folder / ".lock").exists()
    assert run(cfg)["status"] == "failed"  # the same command: skipped, nothing to do
    # the same run with on_collapse=warn (same folder: the knob is not hashed) trains on
    again = run(quick_cfg(*COLLAPSE))
    assert again["status"] == "completed" and again["run_dir"] == s["run_dir"] and "stop_reason" not in again


def test_on_collapse_is_checked_and_leaves_the_hash_alone(quick_cfg):
    with pytest.raises(ConfigError, match="on_collapse='maybe' is not a valid choice: use one of warn, stop"):
        validate(quick_cfg(*COLLAPSE, "on_collapse=maybe"))
    assert run_hash(quick_cfg("on_collapse=stop")) == run_hash(quick_cfg())


def test_the_method_and_the_schedule_are_built_once_per_run(quick_cfg, monkeypatch):
    """Validation is construction: the objects validate() built are the ones the run trains with."""
    from flipout_repro.methods.magnitude import Magnitude
    from flipout_repro.sparsity.schedule import OneShot

    built = {"method": 0, "schedule": 0}
    for cls, key in ((Magnitude, "method"), (OneShot, "schedule")):
        original = cls.__init__

        def counted(self, *args, _original=original, _key=key, **kwargs):
            built[_key] += 1
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counted)
    summary = run(quick_cfg("method=global_magnitude", "schedule=one_shot", "sparsity=0.5", "epochs=1"))
    assert summary["status"] == "completed" and built == {"method": 1, "schedule": 1}
