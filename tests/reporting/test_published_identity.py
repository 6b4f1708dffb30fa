"""A published cell is a run of ours only when their identities match: a RigL run at the protocol and
axes of the preset that reproduces rigl_paper (rigl_wrn22_2: WRN-22-2, 250 epochs, budget=erk) is the
published cell; the same with the global budget, or with 10 epochs, is "not comparable" and names the
keys that differ. Published rows without a preset (str_paper) match nothing and say why."""
import pandas as pd
import pytest

from helpers import write_summary
from flipout_repro.config.paths import reference_dir
from flipout_repro.reporting import paper_identity, reference, tables
from flipout_repro.reporting.aggregate import make_report

RIGL = ("experiment=rigl_wrn22_2_cifar10", "method=rigl", "sparsity=0.9")


@pytest.fixture(scope="module")
def rigl_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rigl")
    for seed, acc in zip((0, 1, 2), (92.8, 93.0, 92.9)):
        write_summary(root, *RIGL, "budget=erk", seed=seed, acc=acc)
        write_summary(root, *RIGL, "budget=global", seed=seed, acc=acc - 1)
    write_summary(root, *RIGL, "budget=erk", "epochs=10", acc=85.0)
    return root


def test_only_the_run_with_the_presets_identity_is_the_published_cell(rigl_runs, tmp_path):
    make_report(rigl_runs, tmp_path, sweeps=[])
    csv = pd.read_csv(tmp_path / "tables" / "wrn22_2-cifar10.csv")
    ours = csv[csv["n_seeds"] > 0].set_index(["epochs", "setting_label"])
    same = ours.loc[(250, "rigl, budget=erk")]
    assert (same["paper_acc"], same["paper_status"], same["paper_source"]) == (92.9, "reproduced", "rigl_paper")
    other_budget = ours.loc[(250, "rigl")]
    assert pd.isna(other_budget["paper_acc"]) and other_budget["paper_status"] == "not comparable"
    assert other_budget["paper_note"] == "budget.name"
    short = ours.loc[(10, "rigl, budget=erk")]
    assert (short["paper_status"], short["paper_note"]) == ("not comparable", "epochs")
    md = (tmp_path / "tables" / "wrn22_2-cifar10.md").read_text()
    assert "| rigl (budget=erk) | 90.00 % | 3 | 92.90 ± 0.10 | [92.65, 93.15] | 93.90 ± 0.10 | 92.90 | reproduced |" in md
    assert "not comparable: budget.name" in md and "not comparable: epochs" in md
    # the 11 published rows no run covers are missing, in the preset's protocol (the 250-epoch section)
    assert "**Published cells: 12; reproduced 1, missing 11, above 0, below 0.**" in md
    missing = csv[csv["paper_status"] == "missing"]
    assert len(missing) == 11 and set(missing["protocol"]) == {same["protocol"]}


def test_every_published_row_of_a_listed_source_has_the_identity_of_its_presets_job():
    ref = paper_identity.attach_identities(reference.load_reference(reference_dir()), reference_dir())
    rigl = ref[ref["source"] == "rigl_paper"]
    assert (rigl["hash"] != "").all() and rigl["protocol"].nunique() == 1
    assert set(rigl["setting_label"]) == {"rigl, budget=erk", "static, budget=erk", "gradual_magnitude, budget=erk,"
                                          " schedule=cubic, schedule.end=0.768, schedule.every_steps=1000,"
                                          " schedule.start=0.2048"}
    flipout = ref[ref["source"].isin(["flipout_paper", "hoyer_square_paper"])]
    assert (flipout["hash"] != "").all() and flipout["hash"].is_unique
    assert ref.loc[ref["knob"] == "lam", "keys"].map(lambda k: k["epochs"]).eq(500).all()
    str_rows = ref[ref["source"] == "str_paper"]
    assert (str_rows["hash"] == "").all() and str_rows["why"].str.startswith("no sweep preset reproduces str_paper").all()


def test_a_run_matched_to_a_row_without_identity_is_not_comparable(tmp_path):
    ref = reference.load_reference(reference_dir())
    ref = paper_identity.attach_identities(ref[ref["source"] == "str_paper"], reference_dir())
    write_summary(tmp_path, "experiment=str_resnet50_imagenet", acc=74.0)  # sparsity 0.9023, as the paper's row
    cells = reference.attach_reference(tables.aggregate(tables.load_runs(tmp_path / "runs")), ref)
    ours = cells[cells["n_seeds"] == 1].iloc[0]
    assert ours["paper_status"] == "not comparable" and "no sweep preset reproduces str_paper" in ours["paper_note"]
    assert cells.loc[cells["n_seeds"] == 0, "protocol_label"].str.startswith("protocol not known: no sweep").all()


def test_a_mapping_to_a_preset_that_does_not_exist_names_it(tmp_path):
    (tmp_path / "sweeps.csv").write_text("source,sweep\nrigl_paper,rigl_wrn22\n")
    with pytest.raises(ValueError, match="source rigl_paper: sweep='rigl_wrn22' is not a sweep preset: did you mean"):
        paper_identity.reproducing_sweeps(tmp_path)
