"""The paper's periodic schedule, checked against its published table."""
import pytest

from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.schedule import Periodic, PruneEvent

PAPER = {0.75: (2, 117), 0.9375: (4, 70), 0.984375: (6, 50), 0.99609375: (8, 39), 0.999: (10, 32)}


@pytest.mark.parametrize("target", sorted(PAPER))
def test_paper_frequencies_at_350_epochs(target):
    k, f = PAPER[target]
    sched = Periodic()
    assert sched.num_events(target) == k
    assert sched.period(target, 350) == f
    events = sched.events(target, 350, steps_per_epoch=391)
    assert [e.step for e in events] == [i * f * 391 for i in range(1, k + 1)]
    assert events[-1].sparsity == target
    assert events[-1].step < 350 * 391  # never on the last epoch


def test_event_sparsities_halve_the_survivors():
    events = Periodic().events(0.9375, 350, 1)
    assert [e.sparsity for e in events] == [0.5, 0.75, 0.875, 0.9375]


def test_last_event_prunes_exactly_to_a_non_power_target():
    events = Periodic().events(0.996, 350, 1)
    assert len(events) == 8  # 1 - 0.996 = 0.004 > 1/256, so 8 halvings reach it
    assert events[-2].sparsity == pytest.approx(1 - 0.5 ** 7)
    assert events[-1] == PruneEvent(step=8 * 39, sparsity=0.996)


def test_short_run_rounds_the_period_down_instead_of_hitting_the_last_epoch():
    # k = 7 in 20 epochs: round(20/8) = 3 would put the last event at epoch 21 > 20.
    sched = Periodic()
    assert sched.period(0.99, 20) == 2
    assert [e.step for e in sched.events(0.99, 20, 1)] == [2, 4, 6, 8, 10, 12, 14]


def test_fixed_frequency_and_zero_target():
    assert [e.step for e in Periodic(frequency=5).events(0.75, 20, 10)] == [50, 100]
    assert Periodic().events(0.0, 350, 10) == []


def test_schedule_that_does_not_fit_names_the_fix():
    with pytest.raises(ConfigError, match=r"epochs=3 cannot hold: use epochs>=8"):
        Periodic().events(0.99, 3, 1)
    with pytest.raises(ConfigError, match=r"use epochs>=11"):
        Periodic(frequency=5).events(0.75, 10, 1)
