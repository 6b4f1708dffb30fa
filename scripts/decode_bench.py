"""dataset.decode=workers against dataset.decode=device: one process writes a synthetic ImageNet-format
folder (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``; ImageNet-sized noisy gradients, quality 90), then
times full training epochs of the streamed loader (RandomResizedCrop 224 + flip, uint8 batches normalised on
the device) under each setting, the second epoch of each (the first starts the workers and nvjpeg), and
compares the first batch's pixels. scripts/gpu_check.sh runs it on CUDA; on the CPU it is a sanity check.

    python scripts/decode_bench.py ROOT --out decode.json [--device cuda] [--images 1024] [--batch-size 128]
        [--workers N] [--size 224 --eval-resize 256 --width 500 --height 375]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flipout_repro.data import load
from flipout_repro.data.folder import default_workers

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLASSES = 10


def write_folder(root: Path, images: int, width: int, height: int, seed: int = 0) -> None:
    """``images`` training JPEGs (and a tenth as many for val) over 10 class folders; a smooth colour ramp
    plus noise, so that the JPEGs have ImageNet-like sizes (tens of kB), not pure noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None] * np.linspace(0, 1, height)[:, None, None]
    for split, n in (("train", images), ("val", max(CLASSES, images // 10))):
        for i in range(n):
            folder = root / split / f"n{i % CLASSES:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = rng.uniform(0, 255, 3).astype(np.float32)
            pixels = colour * ramp + rng.normal(0, 20, (height, width, 3)).astype(np.float32)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"img_{i}.JPEG", quality=90)


def timed_epoch(data, batch_size: int, device: torch.device, seed: int) -> tuple[float, torch.Tensor]:
    """Seconds of one epoch of ``data.train_batches`` (every batch on the device), and the first batch."""
    g = torch.Generator(device=data.train_y.device).manual_seed(seed)
    start = time.perf_counter()
    first = None
    for x, _ in data.train_batches(batch_size, g):
        first = x if first is None else first
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, first


def main(argv: list[str] | None = None) -> dict:
    """See the module docstring; prints and writes the result (JSON)."""
    p = argparse.ArgumentParser(prog="decode_bench.py")
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--eval-resize", type=int, default=256)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--height", type=int, default=375)
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if not (a.root / "train").is_dir():  # an existing folder is reused as it is (--images then does not apply)
        write_folder(a.root, a.images, a.width, a.height)
    workers = default_workers() if a.workers is None else a.workers
    result: dict = {"device": str(device), "images": a.images, "batch_size": a.batch_size, "workers": workers,
                    "image_wh": [a.width, a.height], "size": a.size,
                    "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    firsts = {}
    for decode in ("workers", "device"):
        data = load("imagenet", a.root, False, device, MEAN, STD, 0, True, image_size=a.size,
                    eval_resize=a.eval_resize, workers=workers, num_classes=CLASSES, decode=decode)
        cold, _ = timed_epoch(data, a.batch_size, device, seed=1)
        warm, firsts[decode] = timed_epoch(data, a.batch_size, device, seed=0)
        result["images"] = len(data.train_y)
        result.setdefault("decode", {})[decode] = {"first_epoch_s": cold, "epoch_s": warm,
                                                   "images_per_s": len(data.train_y) / warm}
    diff = ((firsts["workers"] - firsts["device"]) * torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255).abs()
    result["pixel_diff_grey_levels"] = {"max": float(diff.max()), "mean": float(diff.mean())}
    speed = result["decode"]
    result["device_over_workers_speed"] = speed["device"]["images_per_s"] / speed["workers"]["images_per_s"]
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
