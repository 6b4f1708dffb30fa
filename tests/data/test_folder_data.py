"""dataset=imagenet: real JPEG files in torchvision's ImageFolder layout, decoded and augmented in
DataLoader workers, against torchvision's own transforms."""
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.datasets import ImageFolder

from helpers import CLASSES, MEAN, STD, epoch, make_cfg, run_hash, write_image_folder
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.data import DataError, FolderData, holdout_split, load
from flipout_repro.data.crop_draw import sample_seed
from flipout_repro.data.folder import ImageFiles



def folder(root, workers=0, fraction=1.0, size=32, eval_resize=36, device="cpu"):
    return load("imagenet", root, False, torch.device(device), MEAN, STD, 0, True, train_fraction=fraction,
                image_size=size, eval_resize=eval_resize, workers=workers, num_classes=3)


def test_files_labels_and_evaluation_transform_are_torchvisions(tmp_path):
    d = folder(write_image_folder(tmp_path))
    assert isinstance(d, FolderData) and d.in_channels == 3 and d.image_size == 32 and d.classes == CLASSES
    assert len(d.train_y) == 13 and d.steps_per_epoch(4) == 4 and d.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    reference = ImageFolder(str(tmp_path / "val"), T.Compose([T.Resize(36), T.CenterCrop(32), T.ToTensor(),
                                                              T.Normalize(MEAN, STD)]))
    x, y = next(d.test_batches(6))
    expect = torch.stack([reference[i][0] for i in range(6)])
    assert x.dtype == torch.float32 and x.shape == (6, 3, 32, 32) and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(x, expect)  # bitwise: the same decode, resize, crop and arithmetic


def test_training_augmentation_is_torchvisions_under_the_images_seed(tmp_path):
    d = folder(write_image_folder(tmp_path))
    order, batches = epoch(d, 5)
    perm, key = order[:-1], int(order[-1])
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert torch.equal(y, d.train_y[perm]) and sorted(perm.tolist()) == list(range(13))
    pipeline = T.Compose([T.RandomResizedCrop(32), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    for pos, i in enumerate(perm.tolist()):
        torch.manual_seed(sample_seed(key, i))
        img = Image.open(d.train_files[i]).convert("RGB")
        assert torch.equal(x[pos], pipeline(img)), i
    [plain] = list(d.eval_train_batches(perm[:1], 1))
    assert not torch.allclose(x[0], plain[0], atol=0.1)  # it was augmented


def test_batches_are_identical_for_0_and_2_workers_and_any_batch_size(tmp_path):
    root = write_image_folder(tmp_path)
    _, serial = epoch(folder(root, workers=0), 4)
    _, parallel = epoch(folder(root, workers=2), 4)
    assert len(serial) == len(parallel) == 4
    for (xa, ya), (xb, yb) in zip(serial, parallel):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    _, other_size = epoch(folder(root, workers=2), 13)  # the same order and images in one batch
    assert torch.equal(other_size[0][0], torch.cat([x for x, _ in serial]))
    _, other_seed = epoch(folder(root), 13, seed=1)
    assert not torch.equal(other_seed[0][0], other_size[0][0])


def test_a_resumed_epoch_replays_nothing_and_skips_nothing(tmp_path):
    d = folder(write_image_folder(tmp_path), workers=2)
    order, full = epoch(d, 4)
    rest = list(d.train_batches(4, torch.Generator().manual_seed(99), order.clone(), start=2))
    assert len(rest) == 2
    for (xa, ya), (xb, yb) in zip(full[2:], rest):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_the_hold_out_comes_from_train_and_is_evaluated_like_the_test_set(tmp_path):
    d = folder(write_image_folder(tmp_path), fraction=0.75)
    keep, held = holdout_split(13, 0.75)
    every = ImageFolder(str(tmp_path / "train"))
    assert d.val_files == [every.samples[i][0] for i in held] and len(d.train_files) == 13 - len(held) == 10
    assert d.val_y.tolist() == [every.samples[i][1] for i in held]
    x, y = next(d.val_batches(10))
    assert x.shape == (3, 3, 32, 32) and torch.equal(y, d.val_y)
    plain = folder(tmp_path)
    assert plain.val_y is None and len(plain.train_files) == 13


def test_calibration_images_use_the_evaluation_transform(tmp_path):
    d = folder(write_image_folder(tmp_path))
    reference = ImageFolder(str(tmp_path / "train"), T.Compose([T.Resize(36), T.CenterCrop(32), T.ToTensor(),
                                                                T.Normalize(MEAN, STD)]))
    [x] = list(d.eval_train_batches(torch.tensor([5, 0, 12]), 3))
    assert torch.equal(x, torch.stack([reference[i][0] for i in (5, 0, 12)]))
    assert d.to(torch.device("cpu")).train_y.device.type == "cpu"


def test_augmentation_seed_depends_on_the_epoch_key_and_the_image():
    seeds = {sample_seed(k, i) for k in (0, 1, 2 ** 62 - 1) for i in range(100)}
    assert len(seeds) == 300 and all(0 <= s < 2 ** 63 for s in seeds)
    files = ImageFiles([], 8, 8, True, key=3)
    assert len(files) == 0


def test_a_missing_folder_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError) as err:
        folder(tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg and str((tmp_path / "nowhere" / "train").resolve()) in msg
    assert "set dataset.root to the folder that holds train/<class>/*.JPEG and val/<class>/*.JPEG" in msg


def test_mismatched_class_folders_and_class_count_are_errors(tmp_path):
    root = write_image_folder(tmp_path)
    with pytest.raises(DataError, match=r"holds 3 class folders, the config says dataset.num_classes=1000: set"):
        load("imagenet", root, False, torch.device("cpu"), MEAN, STD, 0, True, image_size=32, eval_resize=36,
             num_classes=1000)
    (root / "val" / CLASSES[2]).rename(root / "val" / "n99999999")
    with pytest.raises(DataError, match=rf"^imagenet: {root / 'val'} lacks 1 class\(es\) of {root / 'train'}: "
                                        rf"{CLASSES[2]}; {root / 'val'} has 1 class\(es\) that {root / 'train'} "
                                        "lacks: n99999999: labels are numbered from the training split's classes"):
        folder(root)
    (root / "val" / "n99999999").rename(root / "val" / CLASSES[2])
    (root / "train" / CLASSES[2]).rename(root / "train" / "n00000000")  # sorts first: every label would shift
    with pytest.raises(DataError, match=r"lacks 1 class\(es\) of .*: n00000000; .* has 1 class\(es\) that"):
        folder(root)


def test_streamed_sets_refuse_download_and_need_eval_resize(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.download=True cannot fetch imagenet: set dataset.download=false"):
        load("imagenet", tmp_path, True, torch.device("cpu"), MEAN, STD, image_size=32, eval_resize=36)
    with pytest.raises(ConfigError, match=r"set dataset.image_size .* and dataset.eval_resize"):
        load("imagenet", tmp_path, False, torch.device("cpu"), MEAN, STD, image_size=32)
    with pytest.raises(ConfigError, match=r"dataset.eval_resize=36 applies to streamed sets only"):
        load("mnist5k", tmp_path, False, torch.device("cpu"), [0.5], [0.5], eval_resize=36)


@pytest.mark.parametrize("overrides, message", [
    (["dataset.eval_resize=200"], "dataset.eval_resize=200 must be in [224, inf)"),
    (["dataset.crop_padding=4"], "dataset.crop_padding=4 does not apply with dataset.eval_resize=256"),
    (["dataset.resize=224"], "dataset.resize=224 does not apply with dataset.eval_resize=256"),
    (["dataset.workers=-1"], "dataset.workers=-1 must be in [0, inf)"),
])
def test_bad_streaming_values_are_named(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("dataset=imagenet", "model=resnet18", *overrides))
    assert message in str(err.value)


def test_the_preset_and_the_worker_count_leave_hashes_alone():
    cfg = make_cfg("dataset=imagenet", "model=resnet18")
    validate(cfg)
    ds = cfg.dataset
    assert (ds.image_size, ds.num_classes, ds.crop_padding, ds.flip, ds.eval_resize) == (224, 1000, 0, True, 256)
    assert list(ds.mean) == MEAN and list(ds.std) == STD and ds.workers is None
    assert run_hash(make_cfg("dataset=imagenet", "model=resnet18", "dataset.workers=3")) == run_hash(cfg)


def test_int8_quantization_runs_on_a_streamed_set(tmp_path):
    from flipout_repro.analysis.quantize import QuantSettings, quantize_and_evaluate
    from flipout_repro.sparsity.masking import Masks
    from flipout_repro.models.lenet import LeNet5

    d = folder(write_image_folder(tmp_path), workers=2)
    torch.manual_seed(0)
    model = LeNet5(3, 3, 32)
    result = quantize_and_evaluate(model, Masks.for_model(model), d, QuantSettings(batch_size=4), eval_batch_size=4)
    assert result["calibration_images"] == 13 and result["calibration_batches"] == 4
    assert 0 <= result["test_acc"] <= 100 and result["zeros_preserved"]


@pytest.mark.parametrize("cpus, workers", [(1, 1), (2, 1), (9, 8), (64, 16)])
def test_default_workers_leave_one_cpu_to_training(monkeypatch, cpus, workers):
    from flipout_repro.data import folder as folder_mod

    monkeypatch.setattr(folder_mod.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert folder_mod.default_workers() == workers


@pytest.mark.parametrize("workers", [0, 2])
def test_a_broken_image_is_named(tmp_path, workers):
    root = write_image_folder(tmp_path)
    bad = root / "val" / CLASSES[0] / f"{CLASSES[0]}_0.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=rf"^{bad} cannot be read as an image \(UnidentifiedImageError") as err:
        list(folder(root, workers=workers).test_batches(6))
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
