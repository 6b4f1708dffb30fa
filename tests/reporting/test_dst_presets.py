"""The dynamic-sparse-training presets: the sweeps expand to their grids and each method's first job composes
and validates; RigL's published CIFAR-10 numbers load as reference rows keyed by our method names."""

import pytest
from hydra import compose, initialize_config_dir

from helpers import REPO
from flipout_repro.config.validate import validate
from flipout_repro.config.paths import config_dir
from flipout_repro.reporting.reference import load_reference
from flipout_repro.reporting.sweep_status import sweep_overrides



def values(jobs, key):
    return sorted({o.split("=", 1)[1] for j in jobs for o in j if o.startswith(key + "=")})


@pytest.mark.parametrize("name, n, methods, sparsities, schedules", [
    ("dst_quickstart", 48, ["flipout", "gradual_magnitude", "rigl", "set"], ["0.9", "0.98"],
     {"rigl": "one_shot", "set": "one_shot", "gradual_magnitude": "cubic", "flipout": "periodic"}),
    ("rigl_wrn22_2", 24, ["rigl", "static"], ["0.5", "0.8", "0.9", "0.95"], {"rigl": "one_shot", "static": "one_shot"}),
    ("rigl_wrn22_2_pruning", 12, ["gradual_magnitude"], ["0.5", "0.8", "0.9", "0.95"], {"gradual_magnitude": "cubic"}),
])
def test_dst_presets_expand_and_validate(name, n, methods, sparsities, schedules, tmp_path):
    jobs = sweep_overrides(name)
    assert len(jobs) == n and values(jobs, "method") == methods and values(jobs, "sparsity") == sparsities
    assert values(jobs, "seed") == ["0", "1", "2"]
    assert set(values(jobs, "budget")) <= {"erk", "global"} and "erk" in values(jobs, "budget")
    firsts = {}
    for job in jobs:
        firsts.setdefault(next(o for o in job if o.startswith("method=")), job)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for job in firsts.values():
            cfg = compose(config_name="config", overrides=[f"+sweep={name}", *job, f"results_dir={tmp_path}"])
            validate(cfg)
            assert cfg.schedule.name == schedules[cfg.method.name], job
            if name.startswith("rigl"):
                assert (cfg.model.name, cfg.dataset.name, cfg.epochs, cfg.optim.nesterov) == ("wrn22_2", "cifar10", 250, True)


def test_rigl_reference_rows():
    ref = load_reference(REPO / "results" / "reference")
    rigl = ref[ref["source"] == "rigl_paper"]
    assert len(rigl) == 12 and set(rigl["model"]) == {"wrn22_2"} and set(rigl["dataset"]) == {"cifar10"}
    cell = lambda m, s: float(rigl[(rigl["method"] == m) & (rigl["sparsity"] == s)]["paper_acc"].iloc[0])  # noqa
    assert (cell("rigl", 0.9), cell("static", 0.95), cell("gradual_magnitude", 0.5)) == (92.9, 89.0, 94.0)
