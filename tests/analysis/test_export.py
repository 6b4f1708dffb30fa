"""The exported pruned network loads into a fresh model with plain PyTorch (load_state_dict, and
torch.nn.utils.prune's weight_orig/weight_mask layout) and gives the same outputs."""
from pathlib import Path

import pytest
import torch
from torch.nn.utils import prune

from helpers import make_cfg
from flipout_repro.analysis.export import PRUNE_LAYOUT_FILE, STATE_DICT_FILE, load_prune_layout
from flipout_repro.analysis.finished_run import load_run
from flipout_repro.models.lenet import LeNet300100
from flipout_repro.run import run
from flipout_repro.cli.finished_run import export_main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 3-epoch global-magnitude run to 75 % sparsity, exported with flipout-export."""
    root = tmp_path_factory.mktemp("export")
    summary = run(make_cfg("experiment=quickstart", f"results_dir={root}", "progress=false", "device=cpu",
                           "epochs=3", "sparsity=0.75", "method=global_magnitude"))
    out = root / "exported"
    export_main([summary["run_dir"], "--out", str(out)])
    loaded = load_run(summary["run_dir"])
    x, _ = next(loaded.data.test_batches(256))
    with torch.no_grad():
        reference = loaded.model.eval()(x)
    return {"summary": summary, "out": out, "loaded": loaded, "x": x, "reference": reference}


def fresh() -> LeNet300100:
    torch.manual_seed(123)  # different weights from the run's
    return LeNet300100(1, 10, 32).eval()  # the bundled subset at 32x32, as the FlipOut code


def test_plain_state_dict_gives_the_same_outputs(exported):
    model = fresh()
    model.load_state_dict(torch.load(exported["out"] / STATE_DICT_FILE, weights_only=True))
    with torch.no_grad():
        assert torch.equal(model(exported["x"]), exported["reference"])
    zeros = sum(int((m.weight == 0).sum()) for m in (model.fc1, model.fc2, model.fc3))
    assert zeros >= 253_650  # 75 % of 338,200 pruned (a trained weight is never exactly 0 otherwise)


def test_prune_layout_loads_with_prune_identity(exported):
    state = torch.load(exported["out"] / PRUNE_LAYOUT_FILE, weights_only=True)
    assert {"fc1.weight_orig", "fc1.weight_mask", "fc1.bias"} <= set(state) and "fc1.weight" not in state
    masks = exported["loaded"].masks
    assert torch.equal(state["fc2.weight_mask"], masks.values[1].float())
    assert int(sum(state[f"fc{i}.weight_mask"].sum() for i in (1, 2, 3))) == exported["summary"]["nonzero"]
    model = fresh()
    for layer in (model.fc1, model.fc2, model.fc3):
        prune.identity(layer, "weight")
    model.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(model(exported["x"]), exported["reference"])
    for layer in (model.fc1, model.fc2, model.fc3):  # make it permanent: a plain weight with the zeros
        prune.remove(layer, "weight")
    assert torch.equal(model.fc2.weight == 0, masks.values[1] == 0)


def test_prune_layout_loads_with_custom_from_mask_and_the_helper(exported):
    state = torch.load(exported["out"] / PRUNE_LAYOUT_FILE, weights_only=True)
    model = fresh()
    for i, layer in enumerate((model.fc1, model.fc2, model.fc3), start=1):
        prune.custom_from_mask(layer, "weight", state[f"fc{i}.weight_mask"])
    model.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(model(exported["x"]), exported["reference"])
    helper = load_prune_layout(fresh(), exported["out"] / PRUNE_LAYOUT_FILE)
    assert torch.equal(helper.fc1.weight, exported["loaded"].model.fc1.weight)
    with torch.no_grad():
        assert torch.equal(helper(exported["x"]), exported["reference"])


def test_export_writes_the_figure_and_prints_the_table(exported, capsys, tmp_path):
    run_dir = Path(exported["summary"]["run_dir"])
    assert (run_dir / "layer_sparsity.png").read_bytes()[:4] == b"\x89PNG"
    export_main([str(run_dir), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "fc1.weight" in out and "collapsed layers: none" in out and "MACs" in out
    assert "338,200 dense" in out  # LeNet-300-100: one multiply-add per weight


def test_export_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        export_main([str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"{tmp_path} is not a run folder" in err and "Traceback" not in err


def test_an_export_folder_planted_as_a_link_is_refused_and_nothing_is_written_there(exported, capsys, tmp_path):
    run_dir = Path(exported["summary"]["run_dir"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = run_dir / "export"
    planted.symlink_to(elsewhere)
    try:
        with pytest.raises(SystemExit) as exc:
            export_main([str(run_dir)])
    finally:
        planted.unlink()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "export is a symbolic link" in err and "Traceback" not in err, err
    assert list(elsewhere.iterdir()) == []


def test_an_export_that_fails_half_way_removes_only_the_files_it_wrote(exported, capsys, tmp_path, monkeypatch):
    import errno

    import flipout_repro.analysis.export as export_module

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_module, "save_sparse", disk_full)
    with pytest.raises(SystemExit) as exc:
        export_main([exported["summary"]["run_dir"], "--out", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "No space left on device" in err and "Traceback" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
