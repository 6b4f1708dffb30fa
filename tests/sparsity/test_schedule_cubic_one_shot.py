"""The cubic (Zhu & Gupta) and one_shot schedules by hand; cubic composes with any method's scores;
each method's yaml picks its default schedule and the command line overrides it."""
import pytest

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.run import run
from flipout_repro.sparsity.schedule import Cubic, NoPruning, OneShot, PruneEvent


def test_cubic_values_by_hand():
    # t0 = 0, t_end = 0.5 * 8 = 4 epochs, dt = 1 epoch: n = 4, s_j = 0.9 - 0.9 (1 - j/4)^3; s_0 = 0 dropped
    events = Cubic(start=0.0, end=0.5).events(0.9, 8, steps_per_epoch=1)
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert [e.sparsity for e in events] == pytest.approx([0.9 * (1 - 27 / 64), 0.9 * (1 - 1 / 8),
                                                          0.9 * (1 - 1 / 64), 0.9])
    assert events[-1].sparsity == 0.9  # exactly the target


def test_cubic_initial_sparsity_start_and_steps():
    events = Cubic(initial_sparsity=0.5, start=0.25, end=0.75, every_epochs=2).events(0.9, 8, 10)
    # t0 = epoch 2, t_end = epoch 6, dt = 2 epochs: n = 2; s = 0.9 - 0.4 (1 - j/2)^3
    assert events == [PruneEvent(20, 0.5), PruneEvent(40, pytest.approx(0.9 - 0.4 / 8)), PruneEvent(60, 0.9)]
    # dt = 15 steps in a span of 40: n = 2, the target is reached at step 30
    events = Cubic(every_steps=15).events(0.9, 8, 10)
    assert [(e.step, e.sparsity) for e in events] == [(15, pytest.approx(0.7875)), (30, 0.9)]
    # a span shorter than dt: one event at its end
    assert Cubic(every_steps=1000).events(0.9, 8, 10) == [PruneEvent(40, 0.9)]
    assert Cubic().events(0.0, 8, 10) == []


@pytest.mark.parametrize("sched, match", [(lambda: Cubic(end=1.0), "fine-tuning"),
                                          (lambda: Cubic(start=0.5, end=0.5), "schedule.start=0.5 must be below schedule.end"),
                                          (lambda: Cubic(initial_sparsity=0.95), "schedule.initial_sparsity=0.95"),
                                          (lambda: Cubic(every_epochs=0), "schedule.every_epochs=0 must be in")])
def test_cubic_rejects_bad_knobs(sched, match):
    """A knob is refused when the schedule is made (an impossible fit when its events are asked for)."""
    with pytest.raises(ConfigError, match=match):
        sched().events(0.9, 8, 10)


def test_one_shot_at_init_or_at_a_step():
    assert OneShot().events(0.99, 10, 32) == [PruneEvent(0, 0.99)]
    assert OneShot(epoch=3).events(0.99, 10, 32) == [PruneEvent(96, 0.99)]
    assert OneShot(epoch=2.5).events(0.99, 10, 32) == [PruneEvent(80, 0.99)]  # mid-epoch step
    assert OneShot().events(0.0, 10, 32) == [] and NoPruning().events(0.9, 10, 32) == []
    with pytest.raises(ConfigError, match="schedule.epoch=10"):
        OneShot(epoch=10).events(0.99, 10, 32)


def test_bad_schedule_fails_before_training():
    with pytest.raises(ConfigError, match="schedule"):
        validate(make_cfg("experiment=quickstart", "method=flipout", "schedule=cubic", "schedule.end=1.0"))


@pytest.mark.parametrize("method, schedule", [("snip", "one_shot"), ("iter_snip", "one_shot"), ("force", "one_shot"),
                                              ("hoyer_square", "none"), ("group_hoyer_square", "none"),
                                              ("str", "none"), ("weightmom", "cubic"), ("flipout", "periodic")])
def test_each_method_picks_its_default_schedule(method, schedule):
    assert make_cfg("experiment=quickstart", f"method={method}").schedule.name == schedule
    assert make_cfg("experiment=quickstart", f"method={method}", "schedule=periodic").schedule.name == "periodic"


@pytest.mark.parametrize("method", ["flipout", "global_magnitude"])
def test_cubic_composes_with_any_score(quick_cfg, method):
    summary = run(quick_cfg(f"method={method}", "schedule=cubic", "epochs=4"))  # events after epochs 1, 2
    assert summary["config"]["schedule"]["name"] == "cubic"
    assert summary["achieved_sparsity"] == pytest.approx(0.99, abs=1 / summary["prunable"])
    assert [c["sparsity"] for c in summary["curve"]] == pytest.approx([0.0, 0.99 * (1 - 1 / 8), 0.99], abs=1e-5)
