"""dataset=tiny_imagenet: tiny JPEGs in Tiny-ImageNet-200's own layout (train/<wnid>/images/, val/images/
with val_annotations.txt), held in memory; FORCE's values in the preset."""
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.data import LOADERS, DataError, TensorData
from flipout_repro.run import run
from flipout_repro.training.build import load_data

WNIDS = ["n01443537", "n01629819", "n01641577"]  # sorted: labels 0, 1, 2
VAL = [("val_0.JPEG", 2), ("val_1.JPEG", 0), ("val_2.JPEG", 1), ("val_3.JPEG", 2)]


def write_tiny(root, per_class=3):
    base = root / "tiny-imagenet-200"
    rng = np.random.default_rng(0)
    pixels = {}
    for w in WNIDS:
        (base / "train" / w / "images").mkdir(parents=True)
        (base / "train" / w / f"{w}_boxes.txt").write_text("not an image\n")
        for i in range(per_class):
            a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(a).save(base / "train" / w / "images" / f"{w}_{i}.JPEG")
            pixels[f"{w}_{i}"] = np.array(Image.open(base / "train" / w / "images" / f"{w}_{i}.JPEG"))
    Image.fromarray(np.full((64, 64), 77, np.uint8)).save(base / "train" / WNIDS[1] / "images" / "grey.JPEG")
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for name, label in VAL:
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(base / "val" / "images" / name)
        lines.append(f"{name}\t{WNIDS[label]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (base / "wnids.txt").write_text("\n".join(reversed(WNIDS)) + "\n")
    return base, pixels


def test_tiny_imagenet_loads_its_own_layout(tmp_path):
    base, pixels = write_tiny(tmp_path)
    x, y, tx, ty = LOADERS["tiny_imagenet"](tmp_path, False)
    assert x.shape == (10, 3, 64, 64) and x.dtype == torch.uint8 and tx.shape == (4, 3, 64, 64)
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2] and ty.tolist() == [label for _, label in VAL]
    assert torch.equal(x[0], torch.from_numpy(pixels[f"{WNIDS[0]}_0"]).permute(2, 0, 1))
    grey = x[3]  # sorted file names of class 1: grey.JPEG, then n01629819_0..2
    assert (grey == 77).all()  # a grey JPEG becomes RGB with equal channels
    val0 = np.array(Image.open(base / "val" / "images" / "val_0.JPEG").convert("RGB"))
    assert torch.equal(tx[0], torch.from_numpy(val0).permute(2, 0, 1))
    assert torch.equal(LOADERS["tiny_imagenet"](base, False)[1], y)  # root may be the folder itself


def test_a_validation_set_sorted_into_class_folders_is_read_too(tmp_path):
    base, _ = write_tiny(tmp_path)
    for name, label in VAL:
        (base / "val" / WNIDS[label]).mkdir(exist_ok=True)
        (base / "val" / "images" / name).rename(base / "val" / WNIDS[label] / name)
    (base / "val" / "val_annotations.txt").unlink()
    (base / "val" / "images").rmdir()
    _, _, tx, ty = LOADERS["tiny_imagenet"](tmp_path, False)
    assert sorted(ty.tolist()) == [0, 1, 2, 2] and tx.shape == (4, 3, 64, 64)


def test_missing_or_odd_files_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError) as err:
        LOADERS["tiny_imagenet"](tmp_path / "none", False)
    assert "\n" not in str(err.value) and "has no train/ and val/ folders: unzip http://cs231n" in str(err.value)
    with pytest.raises(DataError, match="dataset.download=true cannot fetch Tiny-ImageNet"):
        LOADERS["tiny_imagenet"](tmp_path, True)
    base, _ = write_tiny(tmp_path)
    with open(base / "val" / "val_annotations.txt", "a") as fh:
        fh.write("val_9.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations.txt has 1 class\(es\) that .*train lacks: n99999999"):
        LOADERS["tiny_imagenet"](tmp_path, False)
    (base / "val" / "val_annotations.txt").write_text("".join(f"val_{i}.JPEG\t{w}\t0\t0\t1\t1\n" for i, w in enumerate(WNIDS)))
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(base / "train" / WNIDS[0] / "images" / "small.JPEG")
    with pytest.raises(DataError, match=r"small.JPEG is 48x32, not 64x64"):
        LOADERS["tiny_imagenet"](tmp_path, False)


def test_a_malformed_annotation_line_is_named_by_file_and_line(tmp_path):
    base, _ = write_tiny(tmp_path)
    annotations = base / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "\nval_4.JPEG n01443537 0 0 63 63\n")  # spaces, not tabs
    with pytest.raises(DataError, match=rf"^Tiny-ImageNet: {annotations} line 6 is 'val_4.JPEG n01443537 0 0 63 63',"
                                        r" not '<file>\\t<wnid>\\t...': fix or remove that line"):
        LOADERS["tiny_imagenet"](tmp_path, False)


@pytest.mark.parametrize("layout", ["annotations", "class folders"])
def test_validation_classes_that_differ_from_the_training_folders_are_named(tmp_path, layout):
    """One class index, from train/: a validation split without one of its classes is refused, in either layout."""
    base, _ = write_tiny(tmp_path)
    rows = [r for r in (base / "val" / "val_annotations.txt").read_text().splitlines() if WNIDS[0] not in r]
    (base / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    if layout == "class folders":
        for name, label in VAL:
            if label:
                (base / "val" / WNIDS[label]).mkdir(exist_ok=True)
                (base / "val" / "images" / name).rename(base / "val" / WNIDS[label] / name)
        (base / "val" / "val_annotations.txt").unlink()
        (base / "val" / "images" / "val_1.JPEG").unlink()
        (base / "val" / "images").rmdir()
    where = base / "val" / ("val_annotations.txt" if layout == "annotations" else "")
    with pytest.raises(DataError, match=rf"^Tiny-ImageNet: {str(where).rstrip('/')} lacks 1 class\(es\) of "
                                        rf"{base / 'train'}: {WNIDS[0]}: labels are numbered"):
        LOADERS["tiny_imagenet"](tmp_path, False)


def test_the_preset_has_forces_values_and_trains(tmp_path):
    write_tiny(tmp_path)
    cfg = make_cfg("dataset=tiny_imagenet", "model=lenet5", f"dataset.root={tmp_path}", "epochs=1",
                   "batch_size=4", "method=global_magnitude", "schedule=one_shot", "sparsity=0.5", "device=cpu",
                   "progress=false", f"results_dir={tmp_path / 'results'}")
    validate(cfg)
    ds = cfg.dataset
    assert (ds.image_size, ds.num_classes, ds.crop_padding, ds.flip, ds.download) == (64, 200, 4, True, False)
    assert list(ds.mean) == [0.48024578664982126, 0.44807218089384643, 0.3975477478649648]
    assert list(ds.std) == [0.2769864069088257, 0.26906448510256, 0.282081906210584]
    data = load_data(cfg, torch.device("cpu"))
    assert isinstance(data, TensorData) and data.crop_padding == 4 and data.flip and len(data.train_y) == 10
    summary = run(cfg)
    assert summary["dataset"] == "tiny_imagenet" and summary["achieved_sparsity"] == pytest.approx(0.5, abs=1e-6)
