"""Imagenette through torchvision on tiny JPEGs in its real folder layout (imagenette2/{train,val}/<wnid>/),
resized once at load to the paper's 224x224, and the paper preset's config against those files."""
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from flipout_repro.config.paths import config_dir
from flipout_repro.data import LOADERS, DataError
from flipout_repro.training.build import load_data

WNIDS = ["n01440764", "n02102040", "n03000684"]  # tench, English springer, chain saw (sorted = label order)


def write_imagenette(root, per_class=(2, 1)):
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c, wnid in enumerate(WNIDS):
            folder = root / "imagenette2" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = 240 + 37 * i + c, 320 - 11 * c  # full-size images differ in size and aspect
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{wnid}_{i}.JPEG")
    # a grey image (Imagenette has a few): repeated to 3 channels, as the paper's loader does
    Image.fromarray(np.full((100, 150), 200, np.uint8)).save(root / "imagenette2" / "val" / WNIDS[2] / "grey.JPEG")
    (root / "imagenette2" / "train" / WNIDS[0] / "notes.txt").write_text("not an image")


def test_imagenette_loads_resized_uint8_with_labels_by_wnid(tmp_path):
    write_imagenette(tmp_path)
    x, y, tx, ty = LOADERS["imagenette"](tmp_path, False)
    assert x.shape == (6, 3, 224, 224) and x.dtype == torch.uint8 and tx.shape == (4, 3, 224, 224)
    assert y.tolist() == [0, 0, 1, 1, 2, 2] and sorted(ty.tolist()) == [0, 1, 2, 2]
    grey = tx[ty == 2]
    grey = grey[(grey[:, 0] == grey[:, 1]).all(dim=(1, 2))]
    assert len(grey) == 1 and (grey == 200).all()  # uniform grey stays 200 after the bilinear resize
    img = Image.open(next((tmp_path / "imagenette2" / "train" / WNIDS[0]).glob("*_0.JPEG"))).convert("RGB")
    expect = torch.from_numpy(np.array(img.resize((224, 224), Image.BILINEAR))).permute(2, 0, 1)
    assert torch.equal(x[0], expect)  # PIL bilinear Resize((224, 224)), as the paper's transforms


def test_imagenette_missing_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"Imagenette not found in .*: set dataset.download=true, or dataset.root"):
        LOADERS["imagenette"](tmp_path, False)


def test_paper_preset_loads_imagenette_on_the_device(tmp_path):
    write_imagenette(tmp_path)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=densenet121_imagenette",
                                                       f"dataset.root={tmp_path}", "dataset.download=false"])
    data = load_data(cfg, torch.device("cpu"))
    assert data.image_size == 224 and data.in_channels == 3 and data.crop_padding == 28 and data.flip
    xb, yb = next(data.train_batches(4, torch.Generator().manual_seed(0)))
    assert xb.shape == (4, 3, 224, 224) and xb.dtype == torch.float32 and yb.shape == (4,)


def test_class_folders_that_differ_between_the_splits_are_named(tmp_path):
    """Labels are numbered from train/'s class folders: a val/ without one of them (or with one more) would score
    the test set against shifted labels, so it is refused with the folders named."""
    write_imagenette(tmp_path)
    val = tmp_path / "imagenette2" / "val"
    (val / WNIDS[1] / f"{WNIDS[1]}_0.JPEG").unlink()
    (val / WNIDS[1]).rmdir()
    with pytest.raises(DataError, match=rf"^Imagenette: {val} lacks 1 class\(es\) of .*train: {WNIDS[1]}: labels are"
                                        " numbered from the training split's classes"):
        LOADERS["imagenette"](tmp_path, False)
    (val / WNIDS[1]).mkdir()
    Image.new("RGB", (40, 30)).save(val / WNIDS[1] / "a.JPEG")
    (val / "n03028079").mkdir()  # one of Imagenette's classes, but not in train/
    Image.new("RGB", (40, 30)).save(val / "n03028079" / "b.JPEG")
    with pytest.raises(DataError, match=rf"{val} has 1 class\(es\) that .*train lacks: n03028079"):
        LOADERS["imagenette"](tmp_path, False)


def test_an_unknown_class_folder_an_empty_one_and_a_truncated_jpeg_are_named(tmp_path):
    write_imagenette(tmp_path)
    train = tmp_path / "imagenette2" / "train"
    (train / "n99999999").mkdir()
    with pytest.raises(DataError, match=rf"^Imagenette: {train} holds class folder\(s\) that are not Imagenette's:"
                                        r" n99999999: remove them \(its classes are n01440764, "):
        LOADERS["imagenette"](tmp_path, False)
    (train / "n99999999").rmdir()
    for f in (train / WNIDS[2]).iterdir():
        f.unlink()
    with pytest.raises(DataError, match=rf"class folder\(s\) {WNIDS[2]} of {train} hold no .JPEG files"):
        LOADERS["imagenette"](tmp_path, False)
    write_imagenette(tmp_path / "again")
    bad = tmp_path / "again" / "imagenette2" / "val" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG"
    bad.write_bytes(bad.read_bytes()[:400])  # cut off inside the scan data
    with pytest.raises(DataError, match=rf"^{bad} cannot be read as an image \(OSError: .*\): replace or remove it$"):
        LOADERS["imagenette"](tmp_path / "again", False)
