"""dataset.decode=device (data/jpeg_device.py) on the CPU: the workers read bytes and draw the same crop boxes
and flips as the PIL path (data/folder.py), the training process decodes and crops; same labels and order,
pixels within a grey level of PIL's; a run completes; bad values are named."""
import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.data import DataError, load
from flipout_repro.data.crop_draw import sample_seed
from flipout_repro.data.jpeg_device import ImageBytes
from helpers import run_hash
from flipout_repro.run import run
from helpers import CLASSES, MEAN, STD, epoch, write_image_folder

STD_T = torch.tensor(STD).view(1, 3, 1, 1)


def folder(root, decode, workers=0):
    return load("imagenet", root, False, torch.device("cpu"), MEAN, STD, 0, True, image_size=32, eval_resize=36,
                workers=workers, num_classes=3, decode=decode)


def grey_levels(a, b):
    """|a - b| of two normalised batches, in 0-255 pixel units."""
    return ((a - b) * STD_T * 255).abs()


def test_boxes_and_flips_are_torchvisions_draws_under_the_images_seed(tmp_path):
    d = folder(write_image_folder(tmp_path), "device")
    key = 12345
    images = ImageBytes(d.train_files, 32, 36, True, key)
    flips = []
    for i, path in enumerate(d.train_files):
        raw, params = images[i]
        assert torch.equal(raw, torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.uint8))
        torch.manual_seed(sample_seed(key, i))  # what RandomResizedCrop + RandomHorizontalFlip draw (folder.py)
        img = Image.open(path).convert("RGB")  # the decoded image: the box depends on its size only
        box = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
        flip = bool(torch.rand(1) < 0.5)
        assert params.tolist() == [*box, int(flip), i], i
        flips.append(flip)
    assert 0 < sum(flips) < len(flips)  # both branches are exercised
    assert ImageBytes(d.train_files, 32, 36, False, key)[0][1][4] == 0  # dataset.flip=false never flips


def test_same_labels_order_and_nearly_the_same_pixels_as_the_workers(tmp_path):
    root = write_image_folder(tmp_path)
    order_w, workers = epoch(folder(root, "workers"), 5)
    order_d, device = epoch(folder(root, "device"), 5)
    assert torch.equal(order_w, order_d) and len(workers) == len(device) == 3
    for (xw, yw), (xd, yd) in zip(workers, device):
        assert torch.equal(yw, yd) and xw.shape == xd.shape and xd.dtype == torch.float32
        diff = grey_levels(xw, xd)  # measured: max 1.0, mean 0.005-0.07 (libjpeg-turbo + torch vs PIL)
        assert diff.max() <= 2 and diff.mean() < 0.5
    for (xw, yw), (xd, yd) in zip(folder(root, "workers").test_batches(4), folder(root, "device").test_batches(4)):
        diff = grey_levels(xw, xd)
        assert torch.equal(yw, yd) and diff.max() <= 2 and diff.mean() < 0.5


def test_device_batches_do_not_depend_on_workers_and_resume_mid_epoch(tmp_path):
    root = write_image_folder(tmp_path)
    _, serial = epoch(folder(root, "device", workers=0), 4)
    _, parallel = epoch(folder(root, "device", workers=2), 4)
    _, resumed = epoch(folder(root, "device"), 4, start=2)
    for (xa, ya), (xb, yb) in zip(serial, parallel):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert len(resumed) == 2 and all(torch.equal(a[0], b[0]) for a, b in zip(serial[2:], resumed))


def test_grey_jpegs_come_out_rgb(tmp_path):
    d = folder(write_image_folder(tmp_path), "device")
    i = d.train_files.index(str(tmp_path / "train" / CLASSES[1] / "grey.JPEG"))
    [x] = list(d.eval_train_batches(torch.tensor([i]), 1))
    pixels = x * STD_T + torch.tensor(MEAN).view(1, 3, 1, 1)
    assert x.shape == (1, 3, 32, 32) and torch.allclose(pixels * 255, torch.full_like(x, 90.0), atol=1.01)


def test_cmyk_jpegs_come_out_as_pils_rgb(tmp_path):
    root = write_image_folder(tmp_path)
    path = root / "train" / CLASSES[0] / f"{CLASSES[0]}_0.JPEG"
    rgb = np.zeros((64, 80, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = np.linspace(0, 255, 80, dtype=np.uint8), 100, 30
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    i = torch.tensor([folder(root, "workers").train_files.index(str(path))])
    [xw] = list(folder(root, "workers").eval_train_batches(i, 1))
    [xd] = list(folder(root, "device").eval_train_batches(i, 1))
    assert grey_levels(xw, xd).max() <= 2  # the decoded pixels are equal (PIL-written CMYK); the resizes differ


@pytest.mark.parametrize("content, match", [(b"not a jpeg", r"cannot be decoded as a JPEG on the device \(Unid"),
                                            ("png", r"cannot be decoded as a JPEG on the device \(OSError: a PNG")])
def test_a_file_the_device_cannot_decode_is_named(tmp_path, content, match):
    root = write_image_folder(tmp_path)
    bad = root / "val" / CLASSES[0] / f"{CLASSES[0]}_0.JPEG"
    if content == "png":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad, format="PNG")
    else:
        bad.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{bad} {match}") as err:
        list(folder(root, "device", workers=2).test_batches(6))
    assert "dataset.decode=workers" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_jpeg_data_is_named(tmp_path):
    root = write_image_folder(tmp_path)
    bad = root / "val" / CLASSES[2] / f"{CLASSES[2]}_1.JPEG"
    raw = bad.read_bytes()
    bad.write_bytes(raw[:600] + b"\xff\xd9")  # the header parses, the scan data ends early
    with pytest.raises(DataError, match=rf"^{bad} cannot be decoded as a JPEG on the device"):
        list(folder(root, "device").test_batches(6))


@pytest.mark.parametrize("overrides, message", [
    (["dataset=imagenet", "model=resnet18", "dataset.decode=gpu"],
     "dataset.decode='gpu' is not a valid choice: use one of workers, device"),
    (["dataset.decode=device"], "dataset.decode='device' applies to streamed sets only (dataset=imagenet): "
                                "set dataset.decode=workers"),
])
def test_bad_decode_values_are_named(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert str(err.value) == message


def test_load_refuses_device_decoding_of_an_in_memory_set(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.decode='device' applies to streamed sets only .* set "
                                         r"dataset.decode=workers"):
        load("mnist5k", tmp_path, False, torch.device("cpu"), [0.5], [0.5], decode="device")


def test_hash_only_changes_for_device_decoding():
    base = ("dataset=imagenet", "model=resnet18")
    assert run_hash(make_cfg(*base, "dataset.decode=workers")) == run_hash(make_cfg(*base))
    assert run_hash(make_cfg(*base, "dataset.decode=device")) != run_hash(make_cfg(*base))


def test_one_epoch_run_with_device_decoding(tmp_path):
    root = write_image_folder(tmp_path / "imagenet")
    cfg_args = ["dataset=imagenet", f"dataset.root={root}", "dataset.num_classes=3", "dataset.image_size=16",
                "dataset.eval_resize=18", "dataset.workers=1", "dataset.decode=device", "model=resnet18",
                "method=snip", "sparsity=0.5", "epochs=1", "batch_size=4", "device=cpu", "progress=false",
                f"results_dir={tmp_path / 'runs'}"]
    cfg = make_cfg(*cfg_args)
    summary = run(cfg)
    assert summary["dataset"] == "imagenet" and summary["achieved_sparsity"] == pytest.approx(0.5, abs=1e-6)
    assert summary["status"] == "completed" and 0 <= summary["final_test_acc"] <= 100
    assert summary["hash"] == run_hash(cfg) != run_hash(make_cfg(*[o for o in cfg_args if "decode" not in o]))
