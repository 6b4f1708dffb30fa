"""A refused checkpoint is explained in our words; torch's advice to load it with
weights_only=False (which would run whatever the file holds) is never passed on."""
import pytest
import torch

from flipout_repro.training import checkpoint


class Payload:
    """Anything but tensors and plain containers: what weights_only=True refuses to unpickle."""


def test_a_checkpoint_with_code_in_it_is_refused_without_torchs_advice(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": checkpoint.FORMAT, "model": Payload()}, path)
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(path, model=None, optimizer=None, lr_scheduler=None, masks=None, method=None,
                        generator=torch.Generator())
    text = str(err.value)
    assert "weights_only" not in text and "arbitrary code" not in text, text
    assert "holds objects other than tensors and plain containers" in text
    assert text.endswith("delete it, or pass resume=false to start the run over")


def test_a_finished_runs_file_with_code_in_it_is_refused_without_torchs_advice(tmp_path):
    from flipout_repro.analysis.finished_run import RunFolderError, _torch_load

    path = tmp_path / "model.pt"
    torch.save({"w": Payload()}, path)
    with pytest.raises(RunFolderError) as err:
        _torch_load(path)
    assert "weights_only" not in str(err.value) and "holds objects other than tensors" in str(err.value)
