"""A finished run keeps its final weights in model.pt (a plain state dict), so
checkpoint.pt (for resuming) may go; every fix a message suggests for a damaged run folder works."""
import json
import pytest
import torch

from flipout_repro.analysis.finished_run import RunFolderError, load_run
from flipout_repro.cli.finished_run import export_main
from flipout_repro.rundir import RunDir
from flipout_repro.run import run


@pytest.fixture
def finished(quick_cfg):
    cfg = quick_cfg("epochs=2", "sparsity=0.5", "method=global_magnitude", "schedule=one_shot", "schedule.epoch=1")
    summary = run(cfg)
    return cfg, RunDir(summary["run_dir"])


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_pt_holds_the_final_weights_and_is_enough_without_the_checkpoint(finished, capsys):
    cfg, folder = finished
    state = torch.load(folder.model, weights_only=True)
    assert same_weights(state, torch.load(folder.checkpoint, weights_only=True)["model"])
    assert (state["fc1.weight"] == 0).float().mean() > 0.4  # the pruned weights are in it, as zeros
    folder.checkpoint.unlink()
    loaded = load_run(folder.path, with_data=False)
    assert same_weights(loaded.model.state_dict(), state)
    export_main([str(folder.path)])
    assert "pruned_state_dict" in capsys.readouterr().out


def test_a_run_without_model_pt_is_read_from_its_checkpoint(finished):
    cfg, folder = finished
    state = torch.load(folder.model, weights_only=True)
    folder.model.unlink()
    assert same_weights(load_run(folder.path, with_data=False).model.state_dict(), state)


@pytest.mark.parametrize("damage", ["both weight files gone", "masks gone", "model.pt damaged"])
def test_the_fix_a_damaged_run_folder_is_told_works(finished, damage):
    cfg, folder = finished
    if damage == "both weight files gone":
        folder.model.unlink()
        folder.checkpoint.unlink()
    elif damage == "masks gone":
        folder.masks.unlink()
    else:
        folder.model.write_bytes(b"not a torch file")
    with pytest.raises(RunFolderError) as err:
        load_run(folder.path, with_data=False)
    text = str(err.value)
    assert "resume=false" not in text  # a finished run is skipped whatever resume says
    assert f"delete {folder.summary} and run the flipout-train command that made the run again" in text, text
    folder.summary.unlink()  # what the message says
    run(cfg)
    loaded = load_run(folder.path, with_data=False)
    assert loaded.summary["status"] == "completed" and folder.model.exists() and folder.masks.exists()


@pytest.mark.parametrize("reason, fix", [(None, "lower optim.lr"), ("layer_collapse", "on_collapse=warn"),
                                         ("sparsity_not_reached", "a schedule whose prune events reach the target")])
def test_a_failed_run_is_refused_with_what_to_change_not_with_run_it_again(finished, reason, fix):
    from flipout_repro.analysis.finished_run import RunFolderError, load_run

    _, run_dir = finished
    summary = json.loads(run_dir.summary.read_text())
    run_dir.summary.write_text(json.dumps(summary | {"status": "failed", "error": "boom"}
                                          | ({"stop_reason": reason} if reason else {})))
    with pytest.raises(RunFolderError) as err:
        load_run(run_dir.path, with_data=False)
    assert "is a failed run (boom)" in str(err.value) and fix in str(err.value)
    assert "delete" not in str(err.value)


def test_a_summary_field_of_the_wrong_type_is_one_line_for_every_tool(finished, capsys):
    from flipout_repro.cli.finished_run import quantize_main

    _, run_dir = finished
    summary = json.loads(run_dir.summary.read_text())
    run_dir.summary.write_text(json.dumps(summary | {"quantization": "fast"}))
    with pytest.raises(SystemExit) as exc:
        quantize_main([str(run_dir.path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "quantization='fast' (an object)" in err, err
