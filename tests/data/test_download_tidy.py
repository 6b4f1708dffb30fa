"""A failed download leaves no empty folder behind; what was there before, and any file, stays."""
import pytest
import torchvision

from flipout_repro.data.errors import DataError
from flipout_repro.data.loaders import _mnist


class OfflineMNIST:
    """What torchvision's MNIST does offline: make root/MNIST/raw, then fail to download."""

    def __init__(self, root, train=True, download=False):
        import os
        os.makedirs(os.path.join(root, "MNIST", "raw"), exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")


def test_a_failed_download_leaves_no_empty_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "MNIST", OfflineMNIST)
    with pytest.raises(DataError, match="the download failed"):
        _mnist(tmp_path / "new" / "data", True)
    assert list(tmp_path.iterdir()) == []  # data/ and new/, both made by the attempt, are gone


def test_folders_that_were_there_and_files_stay(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "MNIST", OfflineMNIST)
    root = tmp_path / "data"
    (root / "cifar-10-batches-py").mkdir(parents=True)  # another data set's (empty) folder
    with pytest.raises(DataError):
        _mnist(root, True)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]

    class PartialMNIST(OfflineMNIST):
        def __init__(self, root, train=True, download=False):
            import os
            os.makedirs(os.path.join(root, "MNIST", "raw"), exist_ok=True)
            open(os.path.join(root, "MNIST", "raw", "part.gz"), "w").close()
            raise RuntimeError("Error downloading")

    monkeypatch.setattr(torchvision.datasets, "MNIST", PartialMNIST)
    with pytest.raises(DataError):
        _mnist(root, True)
    assert (root / "MNIST" / "raw" / "part.gz").exists()
