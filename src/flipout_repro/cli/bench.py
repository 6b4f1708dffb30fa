"""Console entry point ``flipout-bench``: steady-state training throughput of every method against dense,
measured by the real training step (training/bench.py); appends to results/bench/<device>.json."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """flipout-bench [--model vgg19] [--methods dense flipout ...] [--device auto] ..."""
    from flipout_repro.cli.failures import guard
    from flipout_repro.training.bench import DEFAULT_METHODS, bench, format_table, resolve_device

    p = argparse.ArgumentParser(prog="flipout-bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg19")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS,
                   help="method configs to time; the first is the baseline (default: dense first)")
    p.add_argument("--input-shape", nargs=3, type=int, default=None, metavar=("C", "H", "W"),
                   help="default 3 32 32 (1 28 28 for LeNets)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", default="results/bench", help="folder for <device>.json")
    a = p.parse_args(argv)
    if a.methods[0] != "dense":
        a.methods = ["dense"] + [m for m in a.methods if m != "dense"]
    shape = tuple(a.input_shape) if a.input_shape else ((1, 28, 28) if a.model.startswith("lenet") else (3, 32, 32))
    device = guard("flipout-bench", lambda: resolve_device(a.device))
    result = guard("flipout-bench", lambda: bench(a.model, a.methods, shape, a.classes, a.batch_size, a.steps,
                                                  a.warmup, a.rounds, device, a.sparsity, a.precision,
                                                  a.channels_last, a.compile))
    print(format_table(result))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{device.type}.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(result)
    path.write_text(json.dumps(history, indent=2) + "\n")
    print(f"\nappended to {path}")
