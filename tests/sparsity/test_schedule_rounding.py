"""schedule.rounding: exact lands on each event's sparsity; reference removes floor(fraction x surviving)
weights at every event, as the FlipOut code (models/master_model.py: int(rate * num_unpruned))."""
import pytest
import torch

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.budgets import event_zeros
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.sparsity.schedule import Cubic, OneShot, Periodic

LEVELS = (0.75, 0.9375, 0.984375, 0.99609375, 0.9990234375)  # 1 - 2^-k, k = 2, 4, 6, 8, 10
# Weights kept after the k events of rate 0.5, each removing int(0.5 x surviving): surviving becomes
# ceil(surviving / 2) at every event. By hand, e.g. VGG19: 20,024,000 -> 10,012,000 -> 5,006,000 ->
# 2,503,000 -> 1,251,500 -> 625,750 -> 312,875 -> 156,438 -> 78,219 -> 39,110 -> 19,555.
REFERENCE_KEPT = {
    "vgg19": (20_024_000, (5_006_000, 1_251_500, 312_875, 78_219, 19_555)),
    "resnet18": (11_164_352, (2_791_088, 697_772, 174_443, 43_611, 10_903)),
    "densenet121": (6_880_448, (1_720_112, 430_028, 107_507, 26_877, 6_720)),
    "lenet300_100 (32x32, 1,024 inputs)": (338_200, (84_550, 21_138, 5_285, 1_322, 331)),
    "lenet300_100 (28x28)": (266_200, (66_550, 16_638, 4_160, 1_040, 260)),
}
# exact rounding keeps total - round(level x total): one weight fewer where the halvings rounded up
EXACT_KEPT = {"densenet121": {0.9990234375: 6_719}, "lenet300_100 (28x28)": {0.9375: 16_637, 0.984375: 4_159},
              "lenet300_100 (32x32, 1,024 inputs)": {0.9375: 21_137, 0.984375: 5_284, 0.99609375: 1_321,
                                                     0.9990234375: 330}}


def kept_after(total: int, level: float, rounding: str) -> int:
    """Follow the periodic schedule's events as the loop does, counting weights only."""
    kept = total
    for ev in Periodic(rounding=rounding).events(level, 350, 1):
        kept = total - max(event_zeros(total, kept, ev.sparsity, ev.count, ev.fraction), total - kept)
    return kept


@pytest.mark.parametrize("network", REFERENCE_KEPT)
def test_reference_rounding_gives_the_originals_counts_at_the_five_levels(network):
    total, kept = REFERENCE_KEPT[network]
    assert [kept_after(total, s, "reference") for s in LEVELS] == list(kept)
    exact = [EXACT_KEPT.get(network, {}).get(s, k) for s, k in zip(LEVELS, kept)]
    assert [kept_after(total, s, "exact") for s in LEVELS] == exact


def test_reference_events_carry_the_rate_and_the_levels():
    events = Periodic(rounding="reference").events(0.9990234375, 350, 1)
    assert [e.step for e in events] == [32 * i for i in range(1, 11)]  # the paper's frequency 32
    assert {(e.count, e.fraction) for e in events} == {("remove_floor", 0.5)} and events[-1].sparsity == 0.9990234375
    assert {e.count for e in Periodic().events(0.9990234375, 350, 1)} == {"exact"}
    # between two levels the last event removes less: (1 - 0.996) / (1 - 0.99609375) of the survivors stay
    last = Periodic(rounding="reference").events(0.996, 40, 1)[-1]
    assert last.fraction == pytest.approx(1 - 0.004 / 0.00390625 * 0.5)
    # one-shot keeps floor((1 - s) x n), as the SNIP code's int(n * keep_ratio); cubic: the fractions
    # between its consecutive levels
    assert OneShot(rounding="reference").events(0.999, 5, 1)[0].count == "keep_floor"
    assert event_zeros(20_024_000, 20_024_000, 0.999, "keep_floor") == 20_024_000 - 20_024
    assert event_zeros(338_200, 338_200, 0.999, "keep_floor") == 338_200 - 338  # 338.2 kept -> 338
    assert event_zeros(338_200, 338_200, 0.999, "exact") == 337_862  # round(337,861.8): 338 kept too
    cub = Cubic(end=0.5, rounding="reference").events(0.875, 8, 1)
    assert cub[0].fraction == pytest.approx(cub[0].sparsity)
    assert (1 - cub[0].fraction) * (1 - cub[1].fraction) == pytest.approx(1 - cub[1].sparsity)


def test_prune_to_with_a_fraction_floors_per_unit_of_scope():
    masks = Masks(names=["a", "b"], params=[torch.ones(3), torch.ones(5)], values=[torch.ones(3), torch.ones(5)])
    scores = [torch.tensor([3.0, 1.0, 2.0]), torch.tensor([5.0, 4.0, 0.5, 0.7, 6.0])]
    assert prune_to(scores, masks, 0.0, "global", "remove_floor", 0.5) == 4  # floor(0.5 x 8): 0.5, 0.7, 1, 2
    assert masks.values[0].tolist() == [1, 0, 0] and masks.values[1].tolist() == [1, 1, 0, 0, 1]
    masks = Masks(names=["a", "b"], params=[torch.ones(3), torch.ones(5)], values=[torch.ones(3), torch.ones(5)])
    assert prune_to(scores, masks, 0.0, "layer", "remove_floor", 0.5) == 1 + 2  # floor(1.5) + floor(2.5)
    assert masks.values[0].tolist() == [1, 0, 1] and masks.values[1].tolist() == [1, 1, 0, 0, 1]


def test_a_bad_rounding_is_named():
    with pytest.raises(ConfigError, match="schedule.rounding='nearest' must be 'exact'"):
        validate(make_cfg("schedule.rounding=nearest"))


def test_the_loop_counts_as_the_reference_code(quick_cfg):
    """LeNet-300-100 on the bundled subset at 32x32 (338,200 weights) to 0.9375 in four events: the
    reference keeps 338,200 -> 169,100 -> 84,550 -> 42,275 -> 21,138, the exact rule 21,137."""
    from flipout_repro.run import run

    ref = run(quick_cfg("method=global_magnitude", "sparsity=0.9375", "epochs=5", "schedule.rounding=reference"))
    exact = run(quick_cfg("method=global_magnitude", "sparsity=0.9375", "epochs=5"))
    assert (ref["prunable"], ref["nonzero"], exact["nonzero"]) == (338_200, 21_138, 21_137)
    assert ref["target_sparsity"] == 0.9375 and ref["achieved_sparsity"] == 1 - 21_138 / 338_200
    assert ref["hash"] != exact["hash"]  # a different protocol, a different run folder
