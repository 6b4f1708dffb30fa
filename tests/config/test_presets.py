"""Every experiment preset runs what results/reference/presets.csv says it runs (method, budget, pattern,
precision, sparsity), states method, budget and precision itself, and the paper sweeps ask for the levels
(sparsities, or Hoyer-Square's lambdas) of the published rows they reproduce. Compose only: no training."""
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from helpers import make_cfg
from flipout_repro.config.paths import config_dir, reference_dir
from flipout_repro.config.targets import prepare
from flipout_repro.config.validate import validate
from flipout_repro.reporting.reference import load_reference
from flipout_repro.reporting.sweep_status import sweep_overrides

PRESETS = sorted(p.stem for p in Path(config_dir(), "experiment").glob("*.yaml"))
TABLE = pd.read_csv(reference_dir() / "presets.csv", comment="#", keep_default_na=False).set_index("experiment")
PAPER_SWEEPS = sorted(p.stem for pattern in ("paper_*.yaml", "rigl_wrn22_2*.yaml")
                      for p in Path(config_dir(), "sweep").glob(pattern))


def published(source: str) -> pd.DataFrame:
    """The rows of one published CSV; Hoyer-Square's (keyed by lambda) get method hoyer_square."""
    df = pd.read_csv(reference_dir() / f"{source}.csv", comment="#")
    return df if "method" in df else df.assign(method="hoyer_square")


@pytest.mark.parametrize("preset", PRESETS)
def test_the_preset_runs_what_its_row_says(preset, tmp_path):
    assert preset in TABLE.index, f"results/reference/presets.csv has no row for conf/experiment/{preset}.yaml"
    row = TABLE.loc[preset]
    cfg = make_cfg(f"experiment={preset}", f"results_dir={tmp_path}")
    validate(cfg)
    assert (cfg.method.name, cfg.budget.name, cfg.pattern.name, cfg.precision) == \
        (row.method, row.budget, row.pattern, row.precision)
    assert cfg.sparsity == pytest.approx(row.sparsity, abs=1e-12)
    # stated by the preset itself, not inherited from the root defaults
    own = OmegaConf.load(Path(config_dir(), "experiment", f"{preset}.yaml"))
    overrides = {k for d in own.defaults if not isinstance(d, str) for k in d}
    assert {"override /method", "override /budget"} <= overrides and "precision" in own, preset
    for source in row.source.split():
        if source != "none":
            df = published(source)
            assert ((df["model"] == cfg.model.name) & (df["dataset"] == cfg.dataset.name)).any(), (preset, source)


def test_every_row_names_a_preset_and_the_report_passes_the_table_by():
    assert sorted(TABLE.index) == PRESETS
    assert "presets" not in set(load_reference(reference_dir())["source"])


@pytest.mark.parametrize("sweep", PAPER_SWEEPS)
def test_paper_sweeps_ask_for_the_published_levels(sweep, tmp_path):
    jobs = [dict(o.split("=", 1) for o in job) for job in sweep_overrides(sweep)]
    cfg = make_cfg(f"+sweep={sweep}", *(f"{k}={v}" for k, v in jobs[0].items()), f"results_dir={tmp_path}")
    sources = TABLE.loc[jobs[0]["experiment"], "source"].split()
    ref = pd.concat([published(s) for s in sources if s != "none"])
    ref = ref[(ref["model"] == cfg.model.name) & (ref["dataset"] == cfg.dataset.name)]
    for method in sorted({j["method"] for j in jobs}):
        rows = ref[ref["method"] == method]
        assert len(rows), f"{sweep}: no published row for method={method} in {sources}"
        mine = [j for j in jobs if j["method"] == method]
        if "hoyer_lambda" in rows and rows["hoyer_lambda"].notna().all():  # sparsity is an outcome of lambda
            asked, levels = {float(j["method.lam"]) for j in mine}, set(rows["hoyer_lambda"].astype(float))
        elif "sparsity" in mine[0]:
            asked, levels = {float(j["sparsity"]) for j in mine}, set(rows["sparsity"].astype(float))
        else:  # the dense baseline: the preset's sparsity, recorded as 0
            job = cfg if mine[0] == jobs[0] else make_cfg(f"+sweep={sweep}", *(f"{k}={v}" for k, v in mine[0].items()),
                                                          f"results_dir={tmp_path}")
            asked, levels = {prepare(job)[1]}, set(rows["sparsity"].astype(float))
        assert sorted(asked) == pytest.approx(sorted(levels), rel=1e-12), (sweep, method)
