"""Checkpoints that resume a run exactly, and load safely.

A checkpoint holds the model, optimizer, LR scheduler, masks, the method's state (flip counters, STR
thresholds, moving averages), the schedule position, every RNG (torch CPU and CUDA, numpy, python, the
data generator) and the data order of a half-finished epoch. It is written atomically (temporary file,
then rename) and read with ``torch.load(weights_only=True)``: only tensors and plain containers, never
code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flipout_repro.rundir import atomic_torch_save, load_tensors
from flipout_repro.training.trainer import TrainState

FORMAT = "flipout-repro-checkpoint-1"
log = logging.getLogger("flipout_repro")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (bad input, like a bad config value); the message names the file
    and the way out."""


def save(path: Path, *, model, optimizer, lr_scheduler, masks, method, generator: torch.Generator,
         state: TrainState, run: dict[str, Any], lookahead: Any = None) -> None:
    """Write everything needed to continue the run from ``state``; ``run`` is the run's identity (its hash,
    seed and label: :func:`run_tag`), checked when the checkpoint is loaded."""
    atomic_torch_save(snapshot(model=model, optimizer=optimizer, lr_scheduler=lr_scheduler, masks=masks,
                               method=method, generator=generator, state=state, lookahead=lookahead)
                      | {"run": run}, path)


def run_tag(hash: str, seed: int, label: str) -> dict[str, Any]:
    """What a checkpoint carries of its run's identity (config/identity.py): hash, seed, and in words."""
    return {"hash": str(hash), "seed": int(seed), "label": str(label)}


def _check_run(ck: dict[str, Any], path: Path | str, run: dict[str, Any] | None) -> None:
    """CheckpointError, naming both identities, when the checkpoint was written by another run."""
    saved = ck.get("run")
    if run is None:
        return
    if saved is None:
        log.warning("checkpoint %s names no run (written by an earlier version): resumed as this run's", path)
        return
    if not isinstance(saved, dict) or (saved.get("hash"), saved.get("seed")) != (run["hash"], run["seed"]):
        theirs = f"{saved.get('hash')}, seed {saved.get('seed')}: {saved.get('label')}" \
            if isinstance(saved, dict) else repr(saved)
        raise CheckpointError(_msg(path, f"was written by another run ({theirs}), not by this one ({run['hash']},"
                                         f" seed {run['seed']}: {run['label']})"))


def snapshot(*, model, optimizer, lr_scheduler, masks, method, generator: torch.Generator,
             state: TrainState, lookahead: Any = None) -> dict[str, Any]:
    """What :func:`save` writes, in memory (a data-parallel job's rank 0 hands it to the other ranks);
    with ``optim.lookahead_every``, the slow copy too (training/lookahead.py)."""
    extra = {} if lookahead is None else {"lookahead": lookahead.state_dict()}
    return extra | {
        "format": FORMAT,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(), "masks": masks.state_dict(),
        "method": method.state_dict(), "generator": generator.get_state(),
        "rng": rng_states(generator.device),
        "state": dataclasses.asdict(state) | {"order": state.order},
    }


def load(path: Path, *, model, optimizer, lr_scheduler, masks, method, generator: torch.Generator,
         run: dict[str, Any] | None = None, lookahead: Any = None) -> TrainState:
    """Restore a checkpoint written by :func:`save` into freshly built objects; return the state. With
    ``run`` (:func:`run_tag`), a checkpoint written by another run is refused before anything is restored."""
    try:
        ck = load_tensors(path)
    except ValueError as exc:  # truncated file, not a zip/pickle, unsafe content
        raise CheckpointError(_msg(path, str(exc))) from exc
    if isinstance(ck, dict) and ck.get("format") == FORMAT:
        _check_run(ck, path, run)
    return restore(ck, path, model=model, optimizer=optimizer, lr_scheduler=lr_scheduler, masks=masks,
                   method=method, generator=generator, lookahead=lookahead)


def restore(ck: Any, path: Path | str, *, model, optimizer, lr_scheduler, masks, method,
            generator: torch.Generator, lookahead: Any = None) -> TrainState:
    """Restore a :func:`snapshot` (read from ``path``, named in errors) into freshly built objects; a
    ``lookahead`` whose snapshot holds no slow copy takes the restored weights as its slow copy."""
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(_msg(path, "is not a flipout-repro checkpoint"))
    try:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        lr_scheduler.load_state_dict(ck["lr_scheduler"])
        masks.load_state_dict(ck["masks"])
        method.load_state_dict(ck["method"])
        _restore_generator(generator, ck["generator"], path)
        set_rng_states(ck["rng"], generator.device)
        state = TrainState(**ck["state"])
        if lookahead is not None:
            lookahead.load_state_dict(ck["lookahead"]) if "lookahead" in ck else lookahead.reset()
    except Exception as exc:  # a checkpoint of another model, method or version
        raise CheckpointError(_msg(path, f"does not match this run ({type(exc).__name__}: {_short(exc)})")) from exc
    if state.order is not None:
        state.order = state.order.to(generator.device)
    return state


def _restore_generator(generator: torch.Generator, saved: torch.Tensor, path: Path) -> None:
    """The data generator's state, or, for a checkpoint written on another kind of device (a CUDA
    generator's state is 16 bytes, a CPU one's 5056), a seed derived from that state: the run goes on
    where it stopped, with data order and augmentation drawn afresh from there."""
    if saved.numel() == generator.get_state().numel():
        generator.set_state(saved)
        return
    digest = hashlib.sha256(saved.cpu().numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    log.warning("checkpoint %s was written on another kind of device than %s: training goes on from it,"
                " with the data order drawn afresh (not bit-identical to an uninterrupted run)",
                path, generator.device)


def _msg(path: Path, problem: str) -> str:
    return f"checkpoint {path} {problem}: delete it, or pass resume=false to start the run over"


def _short(exc: Exception, n: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= n else text[:n] + "..."


def rng_states(device: torch.device | None = None) -> dict[str, Any]:
    """torch (CPU, and the training GPU's), numpy and python RNG states as tensors and plain containers.

    Of the GPUs only the training ``device`` draws numbers in a run, so its state alone is kept: a job
    that resumes on another GPU, or on a node with fewer of them, continues that stream there.
    """
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device is not None and device.type == "cuda" else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_states(rng: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_states` returned; the GPU stream goes to the training ``device``."""
    torch.set_rng_state(rng["torch"])
    saved = rng["cuda"]
    if saved and device is not None and device.type == "cuda":
        # one state, or one per GPU that was visible (the older format, still read)
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_rng_state(saved[0] if len(saved) == 1 else saved[min(index, len(saved) - 1)], device)
    n = rng["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = rng["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
