"""flipout-data: ``check`` reads a folder with the training's own loaders; ``download`` hands torchvision the
root it is given and writes nothing elsewhere (no network here: torchvision's class is replaced)."""
from __future__ import annotations

import numpy as np
import pytest
import torchvision

from helpers import write_cifar10, write_image_folder
from flipout_repro.cli import data as data_cli


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_check_reads_cifar10_files_and_names_the_overrides(tmp_path, no_md5, capsys):
    write_cifar10(tmp_path / "cifar", n=6)
    data_cli.main(["check", "cifar10", "--root", str(tmp_path / "cifar")])
    out = capsys.readouterr().out
    # 5 training batches of 6 images and one test batch of 6, as write_cifar10 wrote them
    assert f"cifar10 in {tmp_path / 'cifar'}: 30 training and 6 test images (3x32x32)" in out
    assert f"dataset=cifar10 dataset.root={tmp_path / 'cifar'} dataset.download=false" in out


def test_check_reads_an_image_folder_and_says_its_class_count(tmp_path, capsys):
    write_image_folder(tmp_path / "imagenet")
    data_cli.main(["check", "imagenet", "--root", str(tmp_path / "imagenet")])
    out = capsys.readouterr().out
    # 3 classes x 4 training JPEGs + the grey one; 3 x 2 validation JPEGs
    assert "imagenet in" in out and "13 training and 6 test images" in out and "3 class folders: readable" in out
    assert "dataset.num_classes=3 (conf/dataset/imagenet.yaml says 1000" in out


def test_check_of_a_folder_without_the_files_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as stop:
        data_cli.main(["check", "cifar10", "--root", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith("flipout-data: error: CIFAR10 not found in") and err.count("\n") == 1
    assert not (tmp_path / "empty" / "cifar-10-batches-py").exists()  # a failed read leaves no folder


def test_check_of_a_missing_root_names_the_download_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        data_cli.main(["check", "mnist", "--root", str(tmp_path / "nowhere")])
    assert stop.value.code == 2
    assert f"flipout-data download mnist --root {tmp_path / 'nowhere'}" in capsys.readouterr().err


def test_download_passes_the_root_to_torchvision_and_writes_nothing_outside_it(tmp_path, monkeypatch, capsys):
    calls = []

    class FakeCIFAR10:
        """Stands for torchvision's CIFAR10: 'downloads' by writing a file under root, then reads as the real one."""

        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            marker = tmp_path / "data" / "cifar10" / "fetched"
            if not download and not marker.exists():
                raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
            if download:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text("x")
            n = 4 if train else 2
            self.data = np.zeros((n, 32, 32, 3), np.uint8)
            self.targets = list(range(n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    data_cli.main(["download", "cifar10", "--root", "data/cifar10"])
    root = str(tmp_path / "data" / "cifar10")
    # asked without a download first (not there), then fetched into the absolute root; the test split is then there
    assert calls[:3] == [(root, True, False), (root, True, True), (root, False, False)]
    assert all(c[0] == root for c in calls)
    assert _files(tmp_path) == ["data/cifar10/fetched"]
    out = capsys.readouterr().out
    assert f"cifar10: downloaded into {root}" in out and "4 training and 2 test images (3x32x32), labels 0 to 3: readable" in out
    assert "num_classes" not in out  # labels below the configured 10 are fine


def test_download_of_a_set_torchvision_cannot_fetch_says_where_to_get_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        data_cli.main(["download", "tiny_imagenet", "--root", str(tmp_path / "tiny")])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "tiny-imagenet-200.zip" in err and f"unzip it into {tmp_path / 'tiny'}" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_download_offline_is_one_line_naming_the_way_out(tmp_path, monkeypatch, capsys):
    class Offline:
        def __init__(self, root, train=True, download=False):
            if download:
                raise OSError("[Errno -3] Temporary failure in name resolution")
            raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(SystemExit) as stop:
        data_cli.main(["download", "mnist", "--root", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "could not be downloaded into" in err and "on a machine with a network" in err
