"""What a set of sweep presets will cost before it starts: its runs (done, to do) and an estimate of the
device-hours of the runs to do, from the training throughput ``flipout-bench`` measured
(``<results_dir>/bench/*.json``).

A run's estimate is its training steps only: ``epochs`` passes over the training set (its share
``dataset.train_fraction`` of ``train_images[dataset]``) at the images per second measured for its model
and method; a method not measured for the model takes the slowest method measured for it (the estimate
errs long). Evaluation, start-up and data loading come on top. The newest measurement of the model on a
CUDA device is used (else on any device), at the runs' precision where one was measured.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from flipout_repro.reporting.sweep_status import Job


@dataclass
class Plan:
    """The runs of the presets and the estimate of the ones to do."""

    runs: int = 0
    done: int = 0
    todo: int = 0
    seconds: float = 0.0  # estimated, of the runs to do that have a measured model
    per_sweep: dict[str, dict[str, Any]] = field(default_factory=dict)
    unmeasured: dict[str, int] = field(default_factory=dict)  # model -> runs to do without a measurement
    devices: set[str] = field(default_factory=set)  # the devices whose measurements were used
    sources: set[str] = field(default_factory=set)  # the files they came from


def measurements(bench_dir: str | Path) -> list[dict[str, Any]]:
    """Every training-throughput record in ``bench_dir``/*.json (each file a list of flipout-bench results),
    oldest first within a file, with the file's name under ``source``; other records (start-up) are skipped."""
    out = []
    for path in sorted(Path(bench_dir).glob("*.json")):
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for r in records if isinstance(records, list) else []:
            if isinstance(r, dict) and isinstance(r.get("methods"), dict) and "model" in r:
                out.append({**r, "source": str(path)})
    return out


def _measurement(records: list[dict[str, Any]], model: str, precision: str) -> dict[str, Any] | None:
    """The newest record of ``model``: on CUDA if any, at ``precision`` if any."""
    mine = [r for r in records if r["model"] == model]
    for keep in (lambda r: str(r.get("device", "")).startswith("cuda"), lambda r: r.get("precision") == precision):
        mine = [r for r in mine if keep(r)] or mine
    return mine[-1] if mine else None


def images_per_second(record: Mapping[str, Any], method: str) -> float:
    """The method's measured training throughput, or the slowest method's of the record."""
    rates = {m: float(v["images_per_s"]) for m, v in record["methods"].items() if v.get("images_per_s")}
    return rates.get(method, min(rates.values()))


def make_plan(jobs: list[Job], records: list[dict[str, Any]], train_images: Mapping[str, int]) -> Plan:
    """Count ``jobs`` by state and estimate the seconds of those not done (``train_images``: data set ->
    training images)."""
    plan = Plan(runs=len(jobs))
    for job in jobs:
        sweep = plan.per_sweep.setdefault(job.sweep, {"runs": 0, "todo": 0, "seconds": 0.0})
        sweep["runs"] += 1
        if job.state in ("done", "failed"):  # failed: the same command skips it
            plan.done += 1
            continue
        plan.todo += 1
        sweep["todo"] += 1
        protocol = job.identity.protocol
        record = _measurement(records, job.model, str(protocol.get("precision")))
        if record is None:
            plan.unmeasured[job.model] = plan.unmeasured.get(job.model, 0) + 1
            continue
        images = train_images[job.dataset] * float(protocol["dataset"].get("train_fraction", 1.0))
        seconds = int(protocol["epochs"]) * images / images_per_second(record, job.method)
        plan.seconds += seconds
        sweep["seconds"] += seconds
        plan.devices.add(f"{record.get('device_name') or record.get('device')} ({record.get('precision')})")
        plan.sources.add(record["source"])
    return plan


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f}" if seconds >= 360 else f"{seconds / 3600:.2g}"


def format_plan(plan: Plan, bench_dir: str | Path) -> str:
    """The lines ``flipout-report --plan`` prints."""
    measured = bool(plan.sources)
    unit = "GPU-hours" if any("cuda" in s or "NVIDIA" in s for s in plan.devices) else "device-hours"
    lines = [f"{plan.runs} runs in {len(plan.per_sweep)} sweep presets: {plan.done} done, {plan.todo} to do"]
    for name, s in plan.per_sweep.items():
        cost = f", about {_hours(s['seconds'])} {unit}" if measured and s["seconds"] else ""
        lines.append(f"  {name}: {s['runs']} runs, {s['todo']} to do{cost}")
    if not measured:
        lines.append(f"no throughput measured yet ({bench_dir}/*.json holds no flipout-bench result): no estimate of"
                     " the GPU-hours; measure it on the GPU machine with make bench-gpu")
        return "\n".join(lines)
    lines.append(f"estimate: about {_hours(plan.seconds)} {unit} for the {plan.todo - sum(plan.unmeasured.values())}"
                 f" runs to do with a measured model, training steps only (evaluation and start-up come on top),"
                 f" from {', '.join(sorted(plan.devices))} in {', '.join(sorted(plan.sources))}")
    for model, n in sorted(plan.unmeasured.items()):
        lines.append(f"  {n} runs of {model} have no measurement: flipout-bench --model {model} --device cuda adds it")
    return "\n".join(lines)
