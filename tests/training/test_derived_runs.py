"""Runs derived from runs, end to end on the bundled digits: IMP's levels in its four rewinding modes, the
four controls, a killed chain resumed, and every parent that cannot serve refused before anything is written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from flipout_repro.config.identity import run_dir
from flipout_repro.config.targets import prepare
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.rundir import RunDir, load_tensors
from flipout_repro.run import run
from flipout_repro.training.build import build
from flipout_repro.training.trainer import Trainer, TrainingInterrupted
from tests.helpers import make_cfg, stop_after

QUICK = ("experiment=lottery_quickstart", "epochs=2", "optim.milestones=[1]", "optim.milestones_of=2", "progress=false")


def _imp(tmp: Path, *extra: str) -> dict:
    return run(make_cfg(*QUICK, f"results_dir={tmp}", *extra))


def _levels(tmp: Path) -> list[RunDir]:
    """The chain's level folders, by sparsity."""
    found = [RunDir(p.parent) for p in (tmp / "runs").glob("*/imp/*/*/seed_0/summary.json")]
    return sorted(found, key=lambda r: json.loads(r.summary.read_text())["target_sparsity"])


def _masks(r: RunDir) -> list[torch.Tensor]:
    return [m.float() for m in load_tensors(r.masks)["masks"]]


def _metrics(r: RunDir, kind: str = "epoch") -> list[dict]:
    return [rec for rec in map(json.loads, r.metrics.read_text().splitlines()) if rec.get("type", "epoch") == kind]


@pytest.fixture(scope="module")
def lottery(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lottery")
    _imp(tmp, "sparsity=0.5")
    return tmp


def test_each_level_keeps_round_0_8_to_the_l_of_the_weights_outside_the_output_layer(lottery):
    levels = _levels(lottery)
    assert len(levels) == 5  # level 0 (dense), 0.8, 0.64, 0.512 kept, then the target 0.5
    n = 1024 * 300 + 300 * 100  # fc1 and fc2 of LeNet-300-100 at 32x32; fc3 (1,000) never pruned
    for level, r in enumerate(levels):
        masks = _masks(r)
        assert int(masks[2].sum()) == 1000
        kept = int(masks[0].sum() + masks[1].sum())
        assert kept == (round(0.8 ** level * n) if level < 4 else n + 1000 - round(0.5 * (n + 1000)) - 1000)
        summary = json.loads(r.summary.read_text())
        assert summary["imp"] == {"rewind": "lottery", "level": level}
    # the chain's end is at exactly the target sparsity of all prunable weights, in the folder of the
    # command's own identity (what a sweep's status looks for)
    cfg = make_cfg(*QUICK, f"results_dir={lottery}", "sparsity=0.5")
    assert run_dir(prepare(cfg)[0]).path == levels[-1].path
    last = json.loads(levels[-1].summary.read_text())
    assert last["achieved_sparsity"] == pytest.approx(0.5, abs=1 / (n + 1000))


def test_a_level_keeps_the_largest_trained_weights_of_the_level_before(lottery):
    levels = _levels(lottery)
    for before, after in zip(levels[1:-1], levels[2:]):
        trained = load_tensors(before.model)
        prev, new = _masks(before), _masks(after)
        assert all(bool((b >= a).all()) for b, a in zip(prev, new))  # only removes
        # by hand: among the survivors of fc1 and fc2 together, the largest |w| are the ones kept
        w = torch.cat([trained["fc1.weight"].abs().flatten()[prev[0].flatten() > 0],
                       trained["fc2.weight"].abs().flatten()[prev[1].flatten() > 0]])
        keep = int(new[0].sum() + new[1].sum())
        threshold = torch.sort(w, descending=True).values[keep - 1]
        kept_w = torch.cat([trained["fc1.weight"].abs()[new[0] > 0], trained["fc2.weight"].abs()[new[1] > 0]])
        assert float(kept_w.min()) == pytest.approx(float(threshold))


def test_lottery_levels_start_from_the_initial_weights_under_their_mask(lottery):
    levels = _levels(lottery)
    init = load_tensors(levels[0].state_file(0))["model"]
    for r in levels[1:]:
        start = load_tensors(r.state_file(0))["model"]
        for i, name in enumerate(("fc1.weight", "fc2.weight", "fc3.weight")):
            assert torch.equal(start[name], init[name] * _masks(r)[i])
        assert torch.equal(start["fc1.bias"], init["fc1.bias"])
        assert [rec["epoch"] for rec in _metrics(r)] == [1, 2]


def test_a_level_records_its_parent_and_the_chains_compute(lottery):
    levels = _levels(lottery)
    summaries = [json.loads(r.summary.read_text()) for r in levels]
    assert "parent" not in summaries[0]
    for before, s, r in zip(levels, summaries[1:], levels[1:]):
        assert s["parent"]["run_dir"] == str(before.path.resolve())
        assert s["parent"]["hash"] == before.path.parent.name
    # each level's own training is counted at its density; the chain's total adds the levels before
    own = [s["train_macs_fraction_own"] for s in summaries]
    assert own[0] == pytest.approx(1.0)
    assert own[1] < own[0]
    assert summaries[-1]["train_macs_fraction"] == pytest.approx(sum(own))


def test_weight_rewinding_starts_each_level_at_epoch_k_of_level_0(tmp_path):
    _imp(tmp_path, "sparsity=0.3", "method.rewind=weights", "method.rewind_epoch=1")
    levels = _levels(tmp_path)
    k1 = load_tensors(levels[0].state_file(1))
    for r in levels[1:]:
        start = load_tensors(r.state_file(1))
        assert torch.equal(start["model"]["fc1.weight"], k1["model"]["fc1.weight"] * _masks(r)[0])
        assert torch.equal(start["generator"], k1["generator"])  # the data order goes on from epoch 1
        assert [rec["epoch"] for rec in _metrics(r)] == [2]  # epochs 2..E only
        assert _metrics(r)[0]["lr"] == pytest.approx(0.01)  # the schedule is at epoch 1: past its milestone
        prune = _metrics(r, "prune")[0]
        assert prune["step"] == int(load_tensors(r.state_file(1))["state"]["step"]) > 0
    own = json.loads(levels[1].summary.read_text())["train_macs_fraction_own"]
    assert own < 0.5  # one of two epochs at 80 % density


def test_lr_rewinding_and_fine_tuning_start_from_the_trained_weights(tmp_path):
    _imp(tmp_path, "sparsity=0.15", "method.rewind=lr")
    _, level1 = _levels(tmp_path)
    assert [rec["epoch"] for rec in _metrics(level1)] == [1, 2]
    assert _metrics(level1)[0]["lr"] == pytest.approx(0.1)  # the schedule restarted
    parent = load_tensors(_levels(tmp_path)[0].model)
    # the start weights, as the child takes them: set up the level again and compare
    cfg = make_cfg(*QUICK, f"results_dir={tmp_path}", "sparsity=0.15", "method.rewind=lr",
                   f"parent.run={_levels(tmp_path)[0].path}")
    from flipout_repro.training import derive
    cfg = derive.pin_parent(cfg, validate(cfg).method)
    b = build(cfg, 0.15, torch.device("cpu"), validate(cfg))
    state, _, facts = derive.start(cfg, b, level1)
    assert state.step == 0 and facts["took"].startswith("the largest trained weights")
    assert torch.equal(b.model.state_dict()["fc1.weight"], parent["fc1.weight"] * b.masks.values[0])

    ft = tmp_path / "ft"
    _imp(ft, "sparsity=0.15", "method.rewind=finetune")
    _, level1 = _levels(ft)
    # fine-tuning trains the epochs after the last milestone (epoch 1 of 2) at the final rate
    assert [rec["epoch"] for rec in _metrics(level1)] == [2]
    assert _metrics(level1)[0]["lr"] == pytest.approx(0.01)


def test_a_killed_chain_resumes_to_the_same_final_weights(tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    _imp(whole, "sparsity=0.4")
    cut = tmp_path / "cut"
    original = stop_after(monkeypatch, 2 * 32 + 32 + 10)  # level 0 (64 steps), level 1 (64), 10 into level 2
    with pytest.raises(TrainingInterrupted):
        _imp(cut, "sparsity=0.4")
    monkeypatch.setattr(Trainer, "step", original)
    assert len([p for p in (cut / "runs").glob("**/summary.json")]) == 1  # only level 0 finished
    _imp(cut, "sparsity=0.4")
    a, b = _levels(whole), _levels(cut)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        wa, wb = load_tensors(x.model), load_tensors(y.model)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def parents(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("parents")
    out = {}
    for method, when in (("snip", []), ("global_magnitude", ["schedule=one_shot", "schedule.epoch=1"]), ("dense", [])):
        s = run(make_cfg(*QUICK, f"results_dir={tmp}", f"method={method}", "budget=global", "sparsity=0.9", *when))
        out[method] = Path(s["run_dir"])
    return out


def _control(parent: Path, kind: str, *extra: str) -> dict:
    return run(make_cfg(*QUICK, f"results_dir={parent.parents[5]}", "method=control", f"method.kind={kind}",
                        f"parent.run={parent}", *extra))


def test_the_four_controls_of_a_snip_run(parents):
    parent = parents["snip"]
    pm = _masks(RunDir(parent))
    pcfg = make_cfg(*QUICK, "method=snip", "budget=global", "sparsity=0.9")
    init = build(pcfg, 0.9, torch.device("cpu")).model.state_dict()  # the parent's initial weights
    for kind in ("shuffle", "reinit", "random_budget", "invert"):
        s = _control(parent, kind)
        r = RunDir(Path(s["run_dir"]))
        cm = _masks(r)
        assert s["status"] == "completed" and s["control"] == kind
        assert [int(m.sum()) for m in cm] == [int(m.sum()) for m in pm]  # the parent's per-layer counts
        assert s["parent"]["final_test_acc"] == json.loads((parent / "summary.json").read_text())["final_test_acc"]
        assert s["config"]["method"]["of"] == "snip" and s["config"]["sparsity"] == 0.9
        moved = sum(int((a != b).sum()) for a, b in zip(cm, pm))
        assert (moved == 0) == (kind == "reinit")
        if kind == "invert":  # a layer that keeps at most half keeps none of the parent's highest scores
            assert all(int((a * b).sum()) == 0 for a, b in zip(cm, pm) if 2 * b.sum() <= b.numel())
        # the start weights: the parent's initial ones (shuffle, invert) or fresh draws (reinit, random_budget)
        cfg = make_cfg(*QUICK, "method=control", f"method.kind={kind}", f"parent.run={parent}")
        from flipout_repro.training import derive
        cfg = derive.pin_parent(cfg, validate(cfg).method)
        b = build(cfg, 0.9, torch.device("cpu"), validate(cfg))
        derive.start(cfg, b, r)
        w = b.model.state_dict()["fc1.weight"]
        same = torch.equal(w, init["fc1.weight"] * b.masks.values[0])
        assert same == (kind in ("shuffle", "invert"))


def test_a_control_of_a_magnitude_run_and_its_folder(parents):
    s = _control(parents["global_magnitude"], "shuffle")
    assert "/control/sparsity_0.9/" in s["run_dir"]
    assert s["parent"]["method"] == "global_magnitude"


def test_a_deleted_parent_leaves_its_childs_summary_whole(parents, tmp_path):
    copy = tmp_path / parents["snip"].relative_to(parents["snip"].parents[5])
    shutil.copytree(parents["snip"], copy)
    s = _control(copy, "reinit")
    shutil.rmtree(copy)
    kept = json.loads((Path(s["run_dir"]) / "summary.json").read_text())
    assert kept["parent"]["final_test_acc"] == s["parent"]["final_test_acc"] is not None
    assert kept["parent"]["run_dir"] == str(copy)
    before = (Path(s["run_dir"]) / "summary.json").read_bytes()
    # the control's identity is its parent's: a command naming a deleted parent is one line, the child intact
    with pytest.raises(ConfigError, match="does not exist"):
        _control(copy, "reinit")
    assert (Path(s["run_dir"]) / "summary.json").read_bytes() == before


@pytest.mark.parametrize("case", ["missing", "unfinished", "dense", "protocol", "seed", "invert", "control"])
def test_a_parent_that_cannot_serve_is_refused_before_anything_is_written(parents, tmp_path, case):
    parent, extra, kind = parents["snip"], [], "shuffle"
    if case == "missing":
        parent = tmp_path / "nothing"
    elif case == "unfinished":
        parent = tmp_path / "half"
        shutil.copytree(parents["snip"], parent)
        (parent / "summary.json").unlink()
    elif case == "dense":
        parent = parents["dense"]
    elif case == "protocol":
        extra = ["epochs=3"]
    elif case == "seed":
        extra = ["seed=1"]
    elif case == "invert":
        parent, kind = parents["global_magnitude"], "invert"
    elif case == "control":
        parent = Path(_control(parents["snip"], "shuffle")["run_dir"])
    results = tmp_path / "results"
    cfg = make_cfg(*QUICK, f"results_dir={results}", "method=control", f"method.kind={kind}", f"parent.run={parent}",
                   *extra)
    with pytest.raises(ConfigError) as err:
        run(cfg)
    text = str(err.value)
    assert "\n" not in text
    assert {"missing": "does not exist", "unfinished": "no summary.json", "dense": "is dense",
            "protocol": "epochs", "seed": "use seed=0", "invert": "pruned at initialisation",
            "control": "is a control itself"}[case] in text
    assert not results.exists()


def test_a_level_whose_parent_lost_the_state_it_rewinds_to_is_refused(tmp_path):
    _imp(tmp_path, "sparsity=0.3", "method.rewind=weights")
    levels = _levels(tmp_path)
    shutil.rmtree(levels[-1].path)
    levels[1].state_file(1).unlink()
    with pytest.raises(ConfigError, match="did not record the state at epoch 1"):
        _imp(tmp_path, "sparsity=0.3", "method.rewind=weights")
    assert not levels[-1].path.exists()


def test_a_control_needs_its_parent_and_a_prune_schedule_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="parent.run"):
        run(make_cfg(*QUICK, f"results_dir={tmp_path}", "method=control"))
    with pytest.raises(ConfigError, match="schedule"):
        _imp(tmp_path, "schedule=periodic")
    assert not (tmp_path / "runs").exists()
