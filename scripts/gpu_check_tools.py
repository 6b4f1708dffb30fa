"""The Python steps of scripts/gpu_check.sh: synthetic CIFAR-10 files, a training run on them, the run's
checks, the benchmarks' entry points, and the closing JSON/Markdown summary.

    python scripts/gpu_check_tools.py write-cifar ROOT [--train 10000] [--test 2000]
    python scripts/gpu_check_tools.py train ROOT -- OVERRIDES...      (flipout-train on ROOT's files)
    python scripts/gpu_check_tools.py check-run RESULTS_DIR OUT.json --target 0.75
    python scripts/gpu_check_tools.py bench -- ARGS...                (flipout-bench ARGS)
    python scripts/gpu_check_tools.py inference RESULTS_DIR -- ARGS... (flipout-bench --inference RUN ARGS)
    python scripts/gpu_check_tools.py summarise OUT_DIR                (OUT_DIR/gpu_check.json and .md)
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

CLASSES = 10


def write_cifar(root: Path, train: int = 10000, test: int = 2000, seed: int = 0) -> None:
    """CIFAR-10's python pickle files (cifar-10-batches-py: data_batch_1..5, test_batch, batches.meta) with
    ``train`` and ``test`` images. The images are learnable: class k's images are noise around its own mean
    colour, so a few epochs reach well above chance (10 %)."""
    if train % 5:
        raise ValueError(f"--train={train} must be a multiple of 5 (five data batches)")
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (CLASSES, 3))
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, name: str) -> None:
        labels = rng.integers(0, CLASSES, n)
        pixels = colours[labels][:, :, None] + rng.normal(0, 40, (n, 3, 1024))
        data = np.clip(pixels, 0, 255).astype(np.uint8).reshape(n, 3072)  # 1024 red, green, blue values
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "labels": labels.tolist(), "data": data,
                         "filenames": [f"{name}_{i}.png" for i in range(n)]}, fh)

    for i in range(1, 6):
        batch(train // 5, f"data_batch_{i}")
    batch(test, "test_batch")
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{k}" for k in range(CLASSES)], "num_cases_per_batch": train // 5,
                     "num_vis": 3072}, fh)


def _accept_synthetic_cifar() -> None:
    """torchvision checks CIFAR files against the real archives' MD5 sums; synthetic ones cannot match."""
    import torchvision

    torchvision.datasets.CIFAR10._check_integrity = lambda self: True
    torchvision.datasets.cifar.check_integrity = lambda *a, **k: True


def train(root: Path, overrides: list[str]) -> None:
    """flipout-train OVERRIDES with dataset=cifar10 read from ``root`` (synthetic files accepted)."""
    _accept_synthetic_cifar()
    from flipout_repro.cli.train import main

    sys.argv = ["flipout-train", "dataset=cifar10", f"dataset.root={root}", "dataset.download=false", *overrides]
    main()


def run_folder(results_dir: Path) -> Path:
    """The one run folder under ``results_dir`` (where its summary.json is)."""
    found = sorted(Path(results_dir).glob("runs/**/summary.json"))
    if len(found) != 1:
        raise SystemExit(f"expected one run under {results_dir}, found {len(found)}")
    return found[0].parent


def check_run(results_dir: Path, target: float) -> dict:
    """The run's checks: completed, finite loss and weights, binary masks at the target sparsity, pruned
    weights exactly zero; with its accuracy, sparsity and time."""
    import torch

    folder = run_folder(results_dir)
    summary = json.loads((folder / "summary.json").read_text())
    weights = torch.load(folder / "model.pt", weights_only=True)
    masks = torch.load(folder / "masks.pt", weights_only=True)
    values = masks["masks"] if isinstance(masks, dict) else masks
    names = masks.get("names") if isinstance(masks, dict) else None
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()]
    losses = [r["train_loss"] for r in records if r.get("type") == "epoch"]
    kept = sum(int(m.sum()) for m in values)
    total = sum(m.numel() for m in values)
    matched = [(weights[n], m) for n, m in zip(names or [], values) if n in weights]
    pruned_zero = bool(matched) and all(bool((w[~m.bool()] == 0).all()) for w, m in matched)
    checks = {
        "completed": summary.get("status") == "completed",
        "losses_finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "weights_finite": all(bool(torch.isfinite(w).all()) for w in weights.values() if w.is_floating_point()),
        "masks_binary": all(bool(((m == 0) | (m == 1)).all()) for m in values),
        "sparsity_at_target": abs((1 - kept / total) - target) < 1e-3,
        "pruned_weights_zero": pruned_zero,
    }
    return {"run": str(folder), "precision": summary.get("precision"), "device": summary.get("device"),
            "final_test_acc": summary.get("final_test_acc"), "achieved_sparsity": summary.get("achieved_sparsity"),
            "epochs": len(losses), "train_losses": losses, "wall_time_s": summary.get("wall_time_s"),
            "checks": checks, "ok": all(checks.values())}


def _read_json(path: Path) -> object | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _junit(path: Path) -> dict | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return counts | {"passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]}


def summarise(out: Path) -> dict:
    """Everything the steps left in ``out``, in ``out/gpu_check.json`` and ``out/gpu_check.md``."""
    out = Path(out)
    steps = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines() if x.strip()] \
        if (out / "steps.jsonl").exists() else []
    bench = _read_json(out / "bench" / "cuda.json") or []
    cells = [{"model": b["model"], "precision": b["precision"], "compile": b["compile"],
              "device_name": b.get("device_name"),
              "images_per_s": {m: r["images_per_s"] for m, r in b["methods"].items()},
              "ratio_to_dense": {m: r["ratio_to_dense"] for m, r in b["methods"].items()},
              "flipout_overhead": (b["methods"]["flipout"]["step_ms"] / b["methods"]["flipout_no_noise"]["step_ms"]
                                   if {"flipout", "flipout_no_noise"} <= set(b["methods"]) else None)}
             for b in bench]
    runs = {p: _read_json(out / f"run_{p}.json") for p in ("fp32", "bf16")}
    result = {"airbench": airbench(out), "steps": steps, "cuda_tests": _junit(out / "cuda_tests.xml"), "bench": cells, "runs": runs,
              "inference": _read_json(out / "inference.json"), "decode": _read_json(out / "decode.json"),
              "semi_structured": (_read_json(out / "inference_2_4.json") or {}).get("semi_structured"),
              "ok": bool(steps) and all(s["status"] == "ok" for s in steps)
              and all(r is not None and r["ok"] for r in runs.values())}
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(result))
    return result


#: scripts/gpu_check.sh's airbench94 targets on an H100: seconds a run, dense and FlipOut; mean test accuracy %
AIRBENCH_TARGETS = {"dense_s": 6.0, "flipout_s": 7.0, "dense_acc": 94.0, "step_ratio": 1.10}


def airbench(out: Path) -> dict:
    """The airbench94 runs (their training seconds and test accuracy, dense and FlipOut) and the training step
    of dense, FlipOut and RigL (ratios to dense), beside :data:`AIRBENCH_TARGETS`."""
    runs = [_read_json(p) for p in sorted((out / "results_airbench").glob("runs/**/summary.json"))]
    runs = [r for r in runs if r]
    dense = [r for r in runs if r.get("method") == "dense"]
    flip = [r for r in runs if r.get("method") == "flipout"]
    bench = (_read_json(out / "bench_airbench" / "cuda.json") or [None])[-1]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"targets": AIRBENCH_TARGETS, "dense_seconds": [r.get("wall_time_s") for r in dense],
            "dense_acc": [r.get("final_test_acc") for r in dense],
            "dense_acc_mean": mean([r["final_test_acc"] for r in dense if r.get("final_test_acc") is not None]),
            "flipout_seconds": [r.get("wall_time_s") for r in flip], "flipout_acc": [r.get("final_test_acc") for r in flip],
            "step_ratio": None if not bench else {m: r["ratio_to_dense"] for m, r in bench["methods"].items()},
            "device_name": None if not bench else bench.get("device_name")}


def _f(v: object, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(r: dict) -> str:
    """The short Markdown report of :func:`summarise`'s result."""
    lines = ["# GPU check", "", f"overall: {'OK' if r['ok'] else 'NOT OK'}", "", "| step | status | s | limit s |",
             "|---|---|---:|---:|"]
    lines += [f"| {s['step']} | {s['status']} (rc {s['rc']}) | {s['seconds']} | {s['limit_s']} |" for s in r["steps"]]
    t = r["cuda_tests"]
    lines += ["", "CUDA tests: " + ("no report" if t is None else
                                   f"{t['passed']} passed, {t['failures'] + t['errors']} failed, {t['skipped']} skipped")]
    ab = r.get("airbench") or {}
    t = ab.get("targets", AIRBENCH_TARGETS)
    secs = lambda xs: ", ".join(_f(x, "{:.2f}") for x in xs) or "-"  # noqa: E731
    lines += ["", f"airbench94 (targets on an H100: dense under {t['dense_s']:g} s, FlipOut under {t['flipout_s']:g} s a"
              f" run; {t['dense_acc']:g} % mean test accuracy dense, on real CIFAR-10; FlipOut and RigL steps within"
              f" {t['step_ratio']:.2f}x of dense):",
              f"- dense runs: {secs(ab.get('dense_seconds', []))} s; test acc {secs(ab.get('dense_acc', []))} %"
              f" (mean {_f(ab.get('dense_acc_mean'), '{:.2f}')})",
              f"- FlipOut 93.75 %: {secs(ab.get('flipout_seconds', []))} s; test acc {secs(ab.get('flipout_acc', []))} %",
              "- step / dense: " + (", ".join(f"{m} {v:.3f}" for m, v in ab["step_ratio"].items())
                                    if ab.get("step_ratio") else "-")]
    methods = ["dense", "global_magnitude", "flipout_no_noise", "flipout"]
    lines += ["", "| model | precision | compile | " + " | ".join(f"{m} img/s" for m in methods)
              + " | flipout / dense | flipout / no-noise |", "|---|---|---|" + "---:|" * (len(methods) + 2)]
    for c in r["bench"]:
        ips = [_f(c["images_per_s"].get(m)) for m in methods]
        lines.append(f"| {c['model']} | {c['precision']} | {c['compile']} | " + " | ".join(ips)
                     + f" | {_f(c['ratio_to_dense'].get('flipout'), '{:.3f}')} | {_f(c['flipout_overhead'], '{:.3f}')} |")
    lines += ["", "| VGG19, 3 epochs, synthetic CIFAR | test acc % | sparsity | checks |", "|---|---:|---:|---|"]
    for p, run in r["runs"].items():
        if run is None:
            lines.append(f"| {p} | - | - | no result |")
            continue
        bad = [k for k, v in run["checks"].items() if not v]
        lines.append(f"| {p} | {_f(run['final_test_acc'], '{:.2f}')} | {_f(run['achieved_sparsity'], '{:.4f}')} | "
                     + ("all pass" if not bad else "FAILED: " + ", ".join(bad)) + " |")
    inf = r["inference"]
    if inf:
        lines += ["", "CPU inference speed-up (sparse / dense): " + ", ".join(
            f"batch {b}: {v['speedup']:.2f}x" for b, v in inf.get("batches", {}).items())]
    lines += semi_structured_lines(r.get("semi_structured"))
    dec = r.get("decode")
    if dec:  # scripts/decode_bench.py
        lines += ["", f"JPEG decoding ({dec['images']} images, batch {dec['batch_size']}, {dec['workers']} workers): "
                  + ", ".join(f"decode={k} {v['images_per_s']:.0f} img/s" for k, v in dec["decode"].items())
                  + f"; device / workers {dec['device_over_workers_speed']:.2f}x"]
    return "\n".join(lines) + "\n"


def semi_structured_lines(semi: dict | None) -> list[str]:
    """The 2:4 run's GPU fp16 timing (analysis/inference.py semi_structured_bench): per batch and layer, dense,
    2:4 semi-structured and CSR milliseconds and the 2:4 speed-up; or why it was skipped."""
    if not semi:
        return ["", "2:4 semi-structured: no result"]
    if semi.get("skipped"):
        return ["", f"2:4 semi-structured: skipped: {semi['skipped']}"]
    lines = ["", f"2:4 semi-structured on {semi.get('device', '?')} ({semi.get('dtype', 'float16')}; ms per forward):",
             "", "| batch | layer | shape (padded) | dense | 2:4 | CSR | 2:4 speed-up |", "|---:|---|---|---:|---:|---:|---:|"]
    for b, layers in semi.get("batches", {}).items():
        for name, t in layers.items():
            dense, s24 = t.get("dense_ms"), t.get("semi_structured_ms")
            up = dense / s24 if dense and s24 else None
            lines.append(f"| {b} | {name} | {t.get('shape')} ({t.get('padded_shape')}) | {_f(dense, '{:.4f}')} | "
                         + (_f(s24, '{:.4f}') if s24 is not None else "error: " + str(t.get("semi_structured_error", "-"))[:80])
                         + f" | {_f(t.get('csr_ms'), '{:.4f}')} | {_f(up, '{:.2f}x')} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    """See the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    head = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="gpu_check_tools.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write-cifar")
    w.add_argument("root", type=Path)
    w.add_argument("--train", type=int, default=10000)
    w.add_argument("--test", type=int, default=2000)
    sub.add_parser("train").add_argument("root", type=Path)
    c = sub.add_parser("check-run")
    c.add_argument("results_dir", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--target", type=float, required=True)
    sub.add_parser("bench")
    sub.add_parser("inference").add_argument("results_dir", type=Path)
    sub.add_parser("summarise").add_argument("out", type=Path)
    a = p.parse_args(head)
    if a.cmd == "write-cifar":
        write_cifar(a.root, a.train, a.test)
    elif a.cmd == "train":
        train(a.root, rest)
    elif a.cmd == "check-run":
        result = check_run(a.results_dir, a.target)
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["checks"]))
        sys.exit(0 if result["ok"] else 1)
    elif a.cmd in ("bench", "inference"):
        from flipout_repro.cli.bench import main as bench_main

        bench_main(rest if a.cmd == "bench" else ["--inference", str(run_folder(a.results_dir)), *rest])
    else:
        r = summarise(a.out)
        print(markdown(r))


if __name__ == "__main__":
    main()
