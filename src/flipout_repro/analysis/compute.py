"""Training compute: the multiply-adds of every training step, summed over the run as the masks change,
against the dense run's.

Convention (the usual one, e.g. RigL, Evci et al. 2020, appendix H): a training step costs 3x the forward
multiply-adds of the masked network per sample (forward, gradient w.r.t. the activations, gradient
w.r.t. the weights), counted for the prunable layers as analysis/layers.py counts them (a pruned weight
does no work; biases, BatchNorm, activations and pooling left out). Only the training steps are counted:
evaluation, a method's scoring passes (SNIP's, FORCE's) and its extra work (FlipOut's noise) are not.
A prune event at step k (recorded in metrics.jsonl with each layer's kept weights) takes effect from
step k+1 on; before the first event the network is dense.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

#: A training step costs this many forward passes of the masked network.
TRAIN_FORWARD_FACTOR = 3


def samples_after(steps: int, n_train: int, batch_size: int) -> int:
    """Training samples seen after ``steps`` steps (each epoch's last batch may be smaller)."""
    spe = -(-n_train // batch_size)
    return (steps // spe) * n_train + min((steps % spe) * batch_size, n_train)


def training_macs(positions: Mapping[str, int], totals: Mapping[str, int], prunes: Iterable[Mapping[str, Any]],
                  total_steps: int, n_train: int, batch_size: int, start_step: int = 0) -> dict[str, Any]:
    """``train_macs`` (masks as they changed), ``train_macs_dense`` and ``train_macs_fraction`` of a run.
    ``start_step``: the step training started from (a derived run may start inside the schedule); the
    dense reference is always one whole dense run.

    ``positions``: output positions per layer (layers.output_positions), ``totals``: its prunable weights,
    ``prunes``: the prune records in order, each with its ``step`` and ``kept`` (layer -> kept weights).
    """
    def forward(kept: Mapping[str, int]) -> int:
        return sum(int(kept.get(name, totals[name])) * pos for name, pos in positions.items())

    dense_fwd = forward(totals)
    sparse, kept, at = 0, dict(totals), start_step
    for rec in prunes:
        step = max(min(int(rec["step"]), total_steps), start_step)
        sparse += forward(kept) * (samples_after(step, n_train, batch_size) - samples_after(at, n_train, batch_size))
        kept, at = {**kept, **rec["kept"]}, step
    sparse += forward(kept) * (samples_after(total_steps, n_train, batch_size)
                               - samples_after(at, n_train, batch_size))
    dense = dense_fwd * samples_after(total_steps, n_train, batch_size)
    return {"train_macs": TRAIN_FORWARD_FACTOR * sparse, "train_macs_dense": TRAIN_FORWARD_FACTOR * dense,
            "train_macs_fraction": sparse / dense if dense else float("nan")}


def prune_records(metrics: Path) -> list[dict[str, Any]]:
    """The prune records of a run's metrics.jsonl that carry per-layer kept counts, in order."""
    if not Path(metrics).exists():
        return []
    out = []
    for line in Path(metrics).read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut short by a crash
            continue
        if rec.get("type") == "prune" and isinstance(rec.get("kept"), dict):
            out.append(rec)
    return out


def run_training_macs(layers: Mapping[str, Mapping[str, Any]], metrics: Path, total_steps: int, n_train: int,
                      batch_size: int, start_step: int = 0) -> dict[str, Any]:
    """training_macs of a finished run from its layer report (layers.layer_report's ``layers``) and the
    prune records in its ``metrics`` file."""
    positions = {n: int(v["output_positions"]) for n, v in layers.items()}
    totals = {n: int(v["prunable"]) for n, v in layers.items()}
    return training_macs(positions, totals, prune_records(metrics), total_steps, n_train, batch_size, start_step)
