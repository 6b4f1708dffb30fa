"""Console entry point ``flipout-bench``: steady-state training throughput of every method against dense,
measured by the real training step (training/bench.py); appends to results/bench/<device>.json.
``flipout-bench --inference RUN``: CPU inference latency of a finished run's pruned network against dense
(analysis/inference.py); writes <RUN>/inference.json and the speed-ups into its summary.json.
``flipout-bench --startup``: a whole flipout-train process's phases (training/startup.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """flipout-bench [--model vgg19] [--methods dense flipout ...] [--device auto] ...
    | flipout-bench --inference RUN [--batches 1 64] [--repeats 30] [--warmup N]"""
    from flipout_repro.cli.failures import guard
    from flipout_repro.bench.training import DEFAULT_METHODS, SPREAD_LIMIT, bench, format_table, resolve_device

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
    p.add_argument("--spread-limit", type=float, default=SPREAD_LIMIT, help="warn when a method's slowest "
                   f"round is more than this times its fastest: its ratio is not to be trusted (default {SPREAD_LIMIT})")
    p.add_argument("--out", default="results/bench", help="folder for <device>.json")
    p.add_argument("--inference", default=None, metavar="RUN", help="a finished run folder: time its pruned"
                   " network against dense on the CPU (Linear layers as sparse CSR) instead of training steps")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64], help="--inference: batch sizes (1 64)")
    p.add_argument("--repeats", type=int, default=30, help="--inference: timed forward passes per case")
    p.add_argument("--startup", action="store_true", help="time whole flipout-train processes by phase"
                   " (import, config, data, build, first step, end of run); appends to <out>/startup.json")
    p.add_argument("--overrides", nargs="+", default=None, help="--startup: the run's overrides (default:"
                   " experiment=quickstart method=flipout sparsity=0.996 epochs=40)")
    p.add_argument("--runs", type=int, default=3, help="--startup: processes timed (3)")
    p.add_argument("--against", default=None, metavar="CMD", help="--startup: a shell command timed in turns")
    p.add_argument("--sweep-jobs", type=int, default=0, metavar="N", help="--startup: also time one sweep"
                   " process (-m) of N jobs, seed=0..N-1: the fixed cost of each job after the first (0: none)")
    a = p.parse_args(argv)
    if a.startup:
        guard("flipout-bench", lambda: _startup(a.overrides, a.runs, a.against, Path(a.out), a.sweep_jobs))
        return
    if a.inference is not None:
        guard("flipout-bench", lambda: _inference(a.inference, tuple(a.batches), max(a.warmup, 1), a.repeats))
        return
    if a.methods[0] != "dense":
        a.methods = ["dense"] + [m for m in a.methods if m != "dense"]
    shape = tuple(a.input_shape) if a.input_shape else ((1, 28, 28) if a.model.startswith("lenet") else (3, 32, 32))
    if not a.spread_limit >= 1:
        guard("flipout-bench", lambda: _bad_spread(a.spread_limit))
    device = guard("flipout-bench", lambda: resolve_device(a.device))
    result = guard("flipout-bench", lambda: bench(a.model, a.methods, shape, a.classes, a.batch_size, a.steps,
                                                  a.warmup, a.rounds, device, a.sparsity, a.precision,
                                                  a.channels_last, a.compile, a.spread_limit))
    print(format_table(result))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{device.type}.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(result)
    path.write_text(json.dumps(history, indent=2) + "\n")
    print(f"\nappended to {path}")


def _bad_spread(value: float) -> None:
    raise ValueError(f"--spread-limit={value} must be >= 1 (slowest round / fastest round): e.g. --spread-limit 1.5")


def _inference(run: str, batches: tuple[int, ...], warmup: int, repeats: int) -> None:
    from flipout_repro.analysis.finished_run import load_run
    from flipout_repro.bench.inference import bench_inference, format_inference
    from flipout_repro.rundir import update_summary, write_json

    if min(batches) < 1 or repeats < 1:
        raise ValueError(f"--batches={list(batches)} and --repeats={repeats} must be >= 1: e.g. --batches 1 64"
                         " --repeats 30")
    loaded = load_run(run, "cpu", with_data=False)
    result = {"run": str(loaded.run.path), "model": loaded.cfg.model.name, "method": loaded.cfg.method.name,
              **bench_inference(loaded.model, loaded.masks, loaded.input_shape, batches, warmup, repeats)}
    print(format_inference(result))
    write_json(loaded.run.path / "inference.json", result)
    update_summary(loaded.run, {"inference": {"cpu_threads": result["threads"], **{
        f"speedup_b{b}": v["speedup"] for b, v in result["batches"].items()}}})  # under the run's lock
    print(f"\nwritten: {loaded.run.path / 'inference.json'}; speed-ups in {loaded.run.summary}")


def _startup(overrides: list[str] | None, runs: int, against: str | None, out: Path, sweep_jobs: int = 0) -> None:
    from flipout_repro.bench.startup import format_startup, startup_bench

    result = startup_bench(overrides, runs, against, sweep_jobs)
    print(format_startup(result))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "startup.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(result)
    path.write_text(json.dumps(history, indent=2) + "\n")
    print(f"\nappended to {path}")


if __name__ == "__main__":
    main()
