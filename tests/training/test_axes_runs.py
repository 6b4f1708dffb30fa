"""budget= and pattern= from the config: refusals with key, value and fix, hashes, and runs on the bundled
subset whose masks have the asked structure."""
from pathlib import Path

import pytest
import torch

from helpers import make_cfg, run_cli
from flipout_repro.sparsity.budgets import Budget, layer_zeros
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.patterns import is_nm
from helpers import run_hash
from flipout_repro.run import run

QUICK = ("experiment=quickstart", "progress=false", "device=cpu")


def quick(tmp_path: Path, *overrides: str):
    return make_cfg(*QUICK, f"results_dir={tmp_path}", *overrides)


@pytest.mark.parametrize("overrides, message", [
    (["budget.name=ring"], "budget='ring' is not a budget (one of global, uniform, erk): e.g. budget=erk"),
    (["method=str", "budget=erk"], "budget='erk' does not apply to method=str, which sets its layers' sparsity"
                                   " itself: use budget=global (all layers) or budget=uniform (each on its own)"),
    (["method=force", "budget.dense_last=true"], "budget.dense_last=True does not apply to method=force"),
    (["method=hoyer_square", "pattern=nm"], "pattern='nm' does not apply to method=hoyer_square"),
    (["pattern=nm", "pattern.n=5"], "pattern.n=5 must be in [1, 3] (kept weights per group of m=4): e.g. pattern.n=2"),
    (["pattern=nm", "pattern.n=0"], "pattern.n=0 must be in [1, 3]"),
    (["pattern=nm", "sparsity=0.9"], "sparsity=0.9 does not match pattern=nm with 2:4, which prunes (m - n)/m = 0.5:"
                                     " drop sparsity= (pattern=nm sets it) or give sparsity=0.5"),
    (["pattern.m=4"], "pattern.m=4 applies to pattern=nm only: add pattern=nm, or drop pattern.m"),
    (["pattern=nm", "budget=erk"], "budget='erk' cannot apply to pattern=nm"),
    (["method=rigl", "pattern=nm"], "pattern='nm' does not apply to method=rigl, whose regrowth keeps no N:M"
                                    " groups: drop pattern="),
    (["method=set", "pattern=nm"], "pattern='nm' does not apply to method=set"),
])
def test_bad_budget_and_pattern_values_are_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(quick(tmp_path, *overrides))
    assert message in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("budget.dense_first=yes", "budget.dense_first='yes' must be true or false"),
    ("pattern.n=two", "pattern.n"),
])
def test_wrong_types_are_refused_when_composed(tmp_path, override, message):
    with pytest.raises(Exception) as err:
        quick(tmp_path, "pattern=nm", override)
    assert message in str(err.value)


def test_nm_sets_the_target_and_an_equal_sparsity_is_accepted(tmp_path):
    assert quick(tmp_path, "pattern=nm").sparsity == 0.5  # over the experiment's 0.99609375
    assert quick(tmp_path, "pattern=nm", "pattern.n=1", "pattern.m=8").sparsity == 0.875
    validate(quick(tmp_path, "pattern=nm", "sparsity=0.5"))


def test_defaults_leave_the_hash_and_other_values_change_it(tmp_path):
    base = run_hash(quick(tmp_path))
    assert run_hash(quick(tmp_path, "budget=global", "pattern=unstructured")) == base
    others = {run_hash(quick(tmp_path, *o)) for o in (["budget=erk"], ["budget=uniform"], ["budget.dense_last=true"],
                                                          ["pattern=nm"], ["pattern=nm", "pattern.n=1"])}
    assert len(others) == 5 and base not in others


@pytest.mark.parametrize("overrides, message", [
    # LeNet-300-100's first layer holds 307,200 of 338,200 weights: dense, it keeps 0.91 > 0.5
    (["budget=erk", "budget.dense_first=true", "sparsity=0.5"],
     "budget.dense_first=True keeps 307200 of 338200 weights dense, more than the 169100 that sparsity=0.5 keeps:"
     " set it to false, or lower sparsity"),
    (["pattern=nm", "pattern.m=8", "pattern.n=4"],
     "pattern.m=8 does not divide the input dimension 300 of fc2.weight (100, 300): pick a pattern.m that divides 300"),
])
def test_a_budget_or_pattern_the_model_cannot_take_fails_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        run(quick(tmp_path, "epochs=2", *overrides))
    assert message in str(err.value)
    assert not (tmp_path / "runs").exists()


def _masks(summary: dict) -> list[torch.Tensor]:
    return torch.load(Path(summary["run_dir"]) / "masks.pt", weights_only=True)["masks"]


@pytest.mark.slow
def test_flipout_with_2_4_ends_2_4_and_says_so(tmp_path):
    summary = run(quick(tmp_path, "method=flipout", "pattern=nm", "epochs=3"))
    assert summary["achieved_sparsity"] == 0.5 and summary["target_sparsity"] == 0.5
    assert all(is_nm(m, 2, 4) for m in _masks(summary))
    rec = summary["pattern"]
    assert rec["is_nm"] and (rec["n"], rec["m"]) == (2, 4)
    # fc1 (300, 1024) pads to (320, 1024) for torch's fp16 2:4 kernels; its pattern already fits
    assert rec["layers"]["fc1.weight"]["semi_structured_problem"] is None
    assert rec["layers"]["fc1.weight"]["semi_structured_padded_shape"] == [320, 1024]


@pytest.mark.slow
def test_global_magnitude_with_erk_ends_on_the_erk_allocation(tmp_path):
    summary = run(quick(tmp_path, "method=global_magnitude", "budget=erk", "sparsity=0.9375", "epochs=5"))
    masks = _masks(summary)
    zeros = [m.numel() - int(m.sum()) for m in masks]
    # the reference rounding counts the events' zeros; ERK shares each event's total among the layers
    expected = layer_zeros([tuple(m.shape) for m in masks], [0, 0, 0], sum(zeros), Budget("erk"))
    assert all(abs(z - e) <= 1 for z, e in zip(zeros, expected)), (zeros, expected)
    # ERK: the small layers are denser (fc3 (10, 100) the densest)
    density = [1 - z / m.numel() for z, m in zip(zeros, masks)]
    assert density[0] < density[1] < density[2]


@pytest.mark.slow
def test_snip_with_the_uniform_budget_prunes_every_layer_alike(tmp_path):
    summary = run(quick(tmp_path, "method=snip", "budget=uniform", "epochs=2"))
    s = summary["config"]["sparsity"]
    # quickstart's reference rounding: one-shot keeps floor((1 - s) n) of each layer (the SNIP code's)
    assert [int(m.sum()) for m in _masks(summary)] == [int((1 - s) * m.numel()) for m in _masks(summary)]


@pytest.mark.slow
def test_cli_flipout_pattern_nm_runs(tmp_path):
    r = run_cli(*QUICK, "method=flipout", "pattern=nm", "epochs=2", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    [path] = (tmp_path / "runs").glob("**/masks.pt")
    assert "sparsity_0.5" in str(path)
    assert all(is_nm(m, 2, 4) for m in torch.load(path, weights_only=True)["masks"])
