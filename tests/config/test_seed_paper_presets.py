"""The seed papers' presets: each composes with its source's values and validates, and trains two epochs
on tiny files written in the real formats (CIFAR pickle batches, an ImageFolder of JPEGs)."""
import pickle

import numpy as np
import pytest

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.run import run
from helpers import write_cifar10
from PIL import Image

TINY = ("epochs=2", "batch_size=8", "device=cpu", "progress=false", "dataset.download=false")


def write_image_folder(root, per_class=(4, 2)):
    """3 classes of random 48x40 JPEGs in torchvision's ImageFolder layout (train/<wnid>/, val/<wnid>/)."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for wnid in ("n01", "n02", "n03"):
            (root / split / wnid).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / split / wnid / f"{i}.JPEG")
    return root


def write_cifar100(root, n=20, seed=0):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in ("train", "test"):
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": rng.integers(0, 100, n).tolist(), "coarse_labels": [0] * n}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)


@pytest.mark.parametrize("preset, model, dataset, batches", [("force_vgg19_cifar10", "vgg19_force", "cifar10", 1),
                                                             ("force_resnet50_cifar100", "resnet50_cifar", "cifar100", 10)])
def test_force_presets_hold_the_reference_recipe(preset, model, dataset, batches):
    cfg = make_cfg(f"experiment={preset}")
    validate(cfg)
    assert (cfg.model.name, cfg.dataset.name, cfg.method.name, cfg.schedule.name) == (model, dataset, "force", "one_shot")
    assert (cfg.method.steps, cfg.method.mode, cfg.method.batches, cfg.method.init, cfg.method.cut) == \
        (60, "exp", batches, "kaiming_normal", "reference")
    assert (cfg.dataset.train_fraction, cfg.precision, cfg.epochs, cfg.batch_size, cfg.sparsity) == (0.9, "fp32", 350, 128, 0.99)
    o = cfg.optim
    assert (o.lr, o.momentum, o.weight_decay, list(o.milestones), o.milestones_of) == (0.1, 0.9, 0.0005, [150, 250], 350)
    # method=iter_snip keeps the preset's settings (the README's --prune_method 1)
    assert make_cfg(f"experiment={preset}", "method=iter_snip").method.steps == 60


def test_str_imagenet_preset_holds_the_reference_recipe():
    cfg = make_cfg("experiment=str_resnet50_imagenet")
    validate(cfg)
    assert (cfg.model.name, cfg.model.init, cfg.dataset.name, cfg.method.name, cfg.schedule.name) == \
        ("resnet50", "kaiming_normal", "imagenet", "str", "none")
    o = cfg.optim
    assert (o.lr, o.momentum, o.nesterov, o.weight_decay, o.schedule, o.warmup_epochs) == \
        (0.256, 0.875, False, 2.251757813e-05, "cosine", 5)
    assert (cfg.epochs, cfg.batch_size, cfg.loss.label_smoothing, cfg.method.s_init, cfg.precision) == \
        (100, 256, 0.1, -3200.0, "fp32")
    assert (cfg.dataset.image_size, cfg.dataset.eval_resize, cfg.dataset.num_classes) == (224, 256, 1000)


def test_force_vgg19_preset_trains_two_epochs_on_tiny_cifar10(tmp_path, no_md5):  # noqa: F811
    write_cifar10(tmp_path / "data", n=10)
    summary = run(make_cfg("experiment=force_vgg19_cifar10", *TINY, "method.steps=2", "sparsity=0.9",
                           f"dataset.root={tmp_path / 'data'}", f"results_dir={tmp_path / 'r'}"))
    assert summary["status"] == "completed" and 0 <= summary["final_val_acc"] <= 100
    assert summary["achieved_sparsity"] >= 0.9  # the reference's cut keeps int(N k) plus ties


@pytest.mark.slow
def test_force_resnet50_preset_trains_two_epochs_on_tiny_cifar100(tmp_path, no_md5):  # noqa: F811
    write_cifar100(tmp_path / "data")
    summary = run(make_cfg("experiment=force_resnet50_cifar100", *TINY, "method.steps=2", "method.batches=1",
                           "sparsity=0.9", f"dataset.root={tmp_path / 'data'}", f"results_dir={tmp_path / 'r'}"))
    assert summary["status"] == "completed" and summary["prunable"] == 23_652_032


@pytest.mark.slow
def test_str_imagenet_preset_trains_two_epochs_on_a_tiny_image_folder(tmp_path):
    root = write_image_folder(tmp_path / "imagenet")  # 3 classes of real JPEGs in train/ and val/
    summary = run(make_cfg("experiment=str_resnet50_imagenet", *TINY, "optim.warmup_epochs=1", "dataset.num_classes=3",
                           "dataset.image_size=32", "dataset.eval_resize=36", "dataset.workers=0",
                           f"dataset.root={root}", f"results_dir={tmp_path / 'r'}"))
    assert summary["status"] == "completed" and summary["sparsity_is_outcome"]
    assert summary["achieved_sparsity"] < 1e-6  # s_init -3200: training starts (and after 2 epochs stays) dense
