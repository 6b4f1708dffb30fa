"""Console entry point ``flipout-bench``: steady-state training throughput of every method against dense,
measured by the real training step (training/bench.py); appends to results/bench/<device>.json.
``flipout-bench --inference RUN``: CPU inference latency of a finished run's pruned network against dense
(bench/inference.py); writes <RUN>/inference.json and, when every case's rounds agree within
--spread-limit, the speed-ups into its summary.json.
``flipout-bench --startup``: a whole flipout-train process's phases (training/startup.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """flipout-bench [--model vgg19] [--methods dense flipout ...] [--device auto] ...
    | flipout-bench --inference RUN [--batches 1 64] [--repeats 10] [--rounds 3] [--warmup N]"""
    from flipout_repro.cli.failures import BAD_INPUT, fail, guard
    from flipout_repro.bench.training import DEFAULT_METHODS, SPREAD_LIMIT, bench, format_table, resolve_device

    p = argparse.ArgumentParser(prog="flipout-bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg19")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS,
                   help="method configs to time; the first is the baseline (default: dense first)")
    p.add_argument("--input-shape", nargs=3, type=int, default=None, metavar=("C", "H", "W"),
                   help="default 3 32 32 (1 28 28 for LeNets)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=None, help="default 128, or the --experiment's")
    p.add_argument("--experiment", default=None, metavar="NAME", help="time the training step of an experiment"
                   " preset (e.g. airbench94: its network, optimiser groups, schedule and summed loss) instead of"
                   " --model with plain SGD")
    p.add_argument("--steps", type=int, default=5, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per method (--inference: per case)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--spread-limit", type=float, default=SPREAD_LIMIT, help="flag a method (--inference: a"
                   " case) whose slowest round is more than this times its fastest: its ratio is not to be trusted;"
                   f" --inference then writes no speed-up into summary.json (default {SPREAD_LIMIT})")
    p.add_argument("--out", default="results/bench", help="folder for <device>.json")
    p.add_argument("--inference", default=None, metavar="RUN", help="a finished run folder: time its pruned"
                   " network against dense on the CPU (Linear layers as sparse CSR) instead of training steps")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64], help="--inference: batch sizes (1 64)")
    p.add_argument("--repeats", type=int, default=10, help="--inference: timed forward passes per round (10)")
    p.add_argument("--startup", action="store_true", help="time whole flipout-train processes by phase"
                   " (import, config, data, build, first step, end of run); appends to <out>/startup.json")
    p.add_argument("--overrides", nargs="+", default=None, help="--startup: the run's overrides (default:"
                   " experiment=quickstart method=flipout sparsity=0.996 epochs=40)")
    p.add_argument("--runs", type=int, default=3, help="--startup: processes timed (3)")
    p.add_argument("--against", default=None, metavar="CMD", help="--startup: a shell command timed in turns")
    p.add_argument("--sweep-jobs", type=int, default=0, metavar="N", help="--startup: also time one sweep"
                   " process (-m) of N jobs, seed=0..N-1: the fixed cost of each job after the first (0: none)")
    a = p.parse_args(argv)
    bad = out_of_range(a)
    if bad:
        fail("flipout-bench", bad, BAD_INPUT)
    if a.startup:
        path = Path(a.out) / "startup.json"
        history = guard("flipout-bench", lambda: read_history(path))  # a corrupt file: before measuring
        guard("flipout-bench", lambda: _startup(a.overrides, a.runs, a.against, path, history, a.sweep_jobs))
        return
    if a.inference is not None:
        noisy = guard("flipout-bench", lambda: _inference(a.inference, tuple(a.batches), max(a.warmup, 1), a.repeats,
                                                          a.rounds, a.spread_limit))
        if noisy:
            fail("flipout-bench", noisy, UNTRUSTED)
        return
    if a.methods[0] != "dense":
        a.methods = ["dense"] + [m for m in a.methods if m != "dense"]
    shape = tuple(a.input_shape) if a.input_shape else ((1, 28, 28) if a.model.startswith("lenet") else (3, 32, 32))
    if a.experiment is not None:  # the preset's model, data shape and batch
        from flipout_repro.config.validate import compose_config, validate

        cfg = guard("flipout-bench", lambda: compose_config(f"experiment={a.experiment}"))
        guard("flipout-bench", lambda: validate(cfg))
        a.model, a.classes = cfg.model.name, cfg.dataset.num_classes
        shape = tuple(a.input_shape) if a.input_shape else (cfg.dataset.in_channels, cfg.dataset.image_size,
                                                             cfg.dataset.image_size)
        a.batch_size = a.batch_size or cfg.batch_size
        a.channels_last = a.channels_last or cfg.channels_last is True  # the preset's layout (airbench94: true)
    a.batch_size = a.batch_size or 128
    device = guard("flipout-bench", lambda: resolve_device(a.device))
    path = Path(a.out) / f"{device.type}.json"
    history = guard("flipout-bench", lambda: read_history(path))  # a corrupt file: before measuring
    result = guard("flipout-bench", lambda: bench(a.model, a.methods, shape, a.classes, a.batch_size, a.steps,
                                                  a.warmup, a.rounds, device, a.sparsity, a.precision,
                                                  a.channels_last, a.compile, a.spread_limit, a.experiment))
    print(format_table(result))
    append(path, history, result)


#: exit code of an --inference measurement whose rounds disagree (failures.py: a failure of the system)
UNTRUSTED = 1
#: (flag, attribute, the smallest value it takes, an example): checked before anything is measured
_AT_LEAST = [("--classes", "classes", 1, "10"), ("--batch-size", "batch_size", 1, "128"), ("--steps", "steps", 1, "5"),
             ("--rounds", "rounds", 1, "3"), ("--warmup", "warmup", 0, "2"), ("--repeats", "repeats", 1, "10"),
             ("--runs", "runs", 1, "3"), ("--sweep-jobs", "sweep_jobs", 0, "4"), ("--spread-limit", "spread_limit", 1,
                                                                                   "1.5")]


def out_of_range(a: argparse.Namespace) -> str:
    """The first flag whose value is out of its range, as one line naming it, its value and a fix ("" if
    none): counts at least 1 (--warmup, --sweep-jobs at least 0), --sparsity in [0, 1) (not nan),
    --spread-limit at least 1 (slowest round / fastest round), --input-shape and --batches positive."""
    for flag, attr, least, example in _AT_LEAST:
        value = getattr(a, attr)
        if value is None:  # a default that depends on another flag (--batch-size)
            continue
        if not value >= least:  # also catches nan
            what = "(slowest round / fastest round)" if attr == "spread_limit" else ""
            return f"{flag}={value} must be >= {least}{' ' + what if what else ''}: e.g. {flag} {example}"
    if not 0 <= a.sparsity < 1:
        return f"--sparsity={a.sparsity} must be in [0, 1) (the fraction of weights removed): e.g. --sparsity 0.9"
    if a.input_shape is not None and min(a.input_shape) < 1:
        return f"--input-shape={' '.join(map(str, a.input_shape))} must be positive: e.g. --input-shape 3 32 32"
    if min(a.batches) < 1:
        return f"--batches={' '.join(map(str, a.batches))} must be >= 1: e.g. --batches 1 64"
    return ""


def read_history(path: Path) -> list:
    """The results already in ``path`` (a JSON list; [] if there is no file); ValueError naming the file and
    the fix when it is not one, so that a measurement is never taken only to be lost."""
    if not path.exists():
        return []
    try:
        history = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): move it away or fix it; each run of flipout-bench"
                         " appends one result to it") from exc
    if not isinstance(history, list):
        raise ValueError(f"{path} holds a JSON {type(history).__name__}, not the list of results flipout-bench"
                         " appends to: move it away or fix it")
    return history


def append(path: Path, history: list, result: dict) -> None:
    """Append ``result`` to ``history`` and write it to ``path`` (atomically)."""
    from flipout_repro.rundir import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, [*history, result])
    print(f"\nappended to {path}")


def _inference(run: str, batches: tuple[int, ...], warmup: int, repeats: int, rounds: int,
               spread_limit: float) -> str:
    """Time the run, write inference.json; the speed-ups into summary.json when every case's rounds agree.
    Returns "" or, for a noisy measurement, the line that says what was not written and why."""
    from flipout_repro.analysis.finished_run import load_run
    from flipout_repro.bench.inference import bench_inference, format_inference
    from flipout_repro.rundir import update_summary, write_json

    loaded = load_run(run, "cpu", with_data=False)
    result = {"run": str(loaded.run.path), "model": loaded.cfg.model.name, "method": loaded.cfg.method.name,
              **bench_inference(loaded.model, loaded.masks, loaded.input_shape, batches, warmup, repeats,
                                rounds=rounds, spread_limit=spread_limit)}
    print(format_inference(result))
    write_json(loaded.run.path / "inference.json", result)
    if not result["trusted"]:
        return (f"{len(result['warnings'])} case(s) of {loaded.run.path / 'inference.json'} spread more than"
                f" {spread_limit:g}x (marked trusted: false there); no speed-up written into {loaded.run.summary}:"
                " rerun on an idle machine, with more --rounds/--repeats")
    update_summary(loaded.run, {"inference": {"cpu_threads": result["threads"], **{
        f"speedup_b{b}": v["speedup"] for b, v in result["batches"].items()}}})  # under the run's lock
    print(f"\nwritten: {loaded.run.path / 'inference.json'}; speed-ups in {loaded.run.summary}")
    return ""


def _startup(overrides: list[str] | None, runs: int, against: str | None, path: Path, history: list,
             sweep_jobs: int = 0) -> None:
    from flipout_repro.bench.startup import format_startup, startup_bench

    result = startup_bench(overrides, runs, against, sweep_jobs)
    print(format_startup(result))
    append(path, history, result)


if __name__ == "__main__":
    main()
