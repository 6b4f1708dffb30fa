"""Bad data met before or during a run: an image size that cannot be allocated names its key; a streamed file
that cannot be read mid-run ends with exit code 7 (the run folder exists) and resumes once it is replaced;
``dataset.verify=true`` names every bad file before the run folder is made (exit code 2)."""
from pathlib import Path

import pytest
import torch

from helpers import CLASSES, MEAN, STD, make_cfg, run_cli, run_hash, write_image_folder
from flipout_repro.cli.failures import BAD_DATA_FILE, BAD_INPUT, exit_code
from flipout_repro.data import DataError, DataFileError, load
from flipout_repro.errors import ConfigError
from flipout_repro.run import run

HUGE = 3_000_000  # a side whose single float32 RGB image (108 TB) no machine allocates


def streamed(root, results, *extra):
    return ["dataset=imagenet", f"dataset.root={root}", "dataset.num_classes=3", "dataset.image_size=12",
            "dataset.eval_resize=14", "dataset.workers=0", "model=lenet300_100", "method=global_magnitude",
            "sparsity=0.5", "epochs=2", "batch_size=4", "device=cpu", "progress=false", f"results_dir={results}",
            *extra]


def test_an_image_size_that_cannot_be_allocated_names_its_key(tmp_path):
    with pytest.raises(ConfigError, match=rf"^dataset.resize={HUGE} needs [\d,.]+ GiB for 5000 images of "
                                          rf"{HUGE}x{HUGE}, which cannot be allocated: give the side"):
        load("mnist5k", tmp_path, False, torch.device("cpu"), [0.5], [0.5], resize=HUGE)
    root = write_image_folder(tmp_path / "imagenet")
    for key, size, eval_resize in (("image_size", HUGE, HUGE), ("eval_resize", 32, HUGE)):
        with pytest.raises(ConfigError, match=rf"^dataset.{key}={HUGE} needs [\d,.]+ GiB for one {HUGE}x{HUGE}"
                                              " image, which cannot be allocated"):
            load("imagenet", root, False, torch.device("cpu"), MEAN, STD, image_size=size, eval_resize=eval_resize)


def test_a_bad_file_met_mid_run_is_exit_code_7_and_the_run_resumes_once_it_is_replaced(tmp_path):
    root = write_image_folder(tmp_path / "imagenet")
    bad = root / "val" / CLASSES[1] / f"{CLASSES[1]}_1.JPEG"
    good = bad.read_bytes()
    bad.write_bytes(good[:300])  # truncated: read at the first evaluation, after epoch 1 trained
    cfg = make_cfg(*streamed(root, tmp_path / "results"))
    with pytest.raises(DataFileError, match=rf"^{bad} cannot be read as an image \(OSError: .*\): replace or remove"
                                            r" it \(dataset.verify=true names every such file before a run starts\)$") \
            as err:
        run(cfg)
    assert exit_code(err.value) == BAD_DATA_FILE == 7
    [folder] = (tmp_path / "results" / "runs").glob("**/seed_0")
    assert (folder / "command.txt").exists() and not (folder / "summary.json").exists()
    bad.write_bytes(good)
    summary = run(cfg)
    assert summary["status"] == "completed" and Path(summary["run_dir"]) == folder


def test_verify_names_every_bad_file_before_anything_is_written(tmp_path):
    root = write_image_folder(tmp_path / "imagenet")
    bad = [root / "train" / CLASSES[0] / f"{CLASSES[0]}_2.JPEG", root / "val" / CLASSES[2] / f"{CLASSES[2]}_0.JPEG"]
    bad[0].write_bytes(b"not an image")
    bad[1].write_bytes(bad[1].read_bytes()[:300])
    with pytest.raises(DataError, match=rf"^imagenet: 2 of 19 files cannot be read as images: {bad[0]}, {bad[1]}: "
                                        "replace or remove them$") as err:
        run(make_cfg(*streamed(root, tmp_path / "results", "dataset.verify=true")))
    assert exit_code(err.value) == BAD_INPUT and not (tmp_path / "results" / "runs").exists()
    assert run_hash(make_cfg(*streamed(root, tmp_path, "dataset.verify=true"))) == run_hash(make_cfg(
        *streamed(root, tmp_path)))  # a check of the files, not part of the run's identity


@pytest.mark.slow  # starts flipout-train in a subprocess, twice
def test_the_command_line_says_it_in_one_line_with_the_documented_codes(tmp_path):
    root = write_image_folder(tmp_path / "imagenet")
    bad = root / "val" / CLASSES[0] / f"{CLASSES[0]}_0.JPEG"
    bad.write_bytes(b"not an image")
    r = run_cli(*streamed(root, tmp_path / "verified", "dataset.verify=true"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("flipout-train: error:")]
    assert line.endswith(f"imagenet: 1 of 19 files cannot be read as images: {bad}: replace or remove them")
    assert not (tmp_path / "verified" / "runs").exists()
    r = run_cli(*streamed(root, tmp_path / "results"))
    assert r.returncode == 7 and "Traceback" not in r.stderr, r.stderr[-2000:]
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("flipout-train: error:")]
    assert f"{bad} cannot be read as an image (UnidentifiedImageError" in line
    assert list((tmp_path / "results" / "runs").glob("**/command.txt"))


def test_verify_reads_each_file_as_the_configured_decoder_will(tmp_path):
    """A PNG saved under a .JPEG name: PIL (dataset.decode=workers) reads it, the device's JPEG decoder cannot."""
    from PIL import Image

    root = write_image_folder(tmp_path / "imagenet")
    png = root / "train" / CLASSES[2] / f"{CLASSES[2]}_1.JPEG"
    Image.open(png).convert("RGB").save(png, format="PNG")

    def verified(decode):
        return load("imagenet", root, False, torch.device("cpu"), MEAN, STD, image_size=12, eval_resize=14,
                    workers=0, num_classes=3, decode=decode, verify=True)

    assert len(verified("workers").train_y) == 13
    with pytest.raises(DataError, match=rf"^imagenet: 1 of 19 files cannot be read as images: {png}: replace"):
        verified("device")
