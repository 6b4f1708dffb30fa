"""Sweeps on several GPUs: which GPU a job trains on, and how many jobs run side by side.

Two OmegaConf resolvers, registered by the entry point and by config.py (so in every process that runs
a job, whatever Hydra launcher started it):

- ``${job_device:}``: the sweep presets' ``device``. With one GPU or none it is ``auto``. With several
  visible GPUs, each worker process claims one GPU for its lifetime through an exclusive ``flock`` on
  ``<tmp>/flipout-repro-gpus/gpu<k>.lock`` (the lock dies with the process), so the joblib launcher's n
  workers train on n different GPUs, and two sweeps started on the same machine share the GPUs instead of
  stacking up on GPU 0. When every GPU is claimed, the job falls back to GPU ``job.num mod n``.
  Under SLURM each job sees only its own GPU(s) and gets ``auto``.
- ``${local_jobs:}``: the joblib launcher's ``n_jobs``: the number of visible GPUs, or 2 without a GPU.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

from omegaconf import OmegaConf

#: This process's GPU claim: (index, open lock file); kept for the life of the process.
_claim: tuple[int, IO] | None = None


def gpu_count() -> int:
    """Visible CUDA devices (0 without CUDA). Does not create a CUDA context."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def lock_dir() -> Path:
    """Where the per-GPU lock files live (one folder per machine and user)."""
    return Path(tempfile.gettempdir()) / f"flipout-repro-gpus-{os.getuid()}"


def claim_gpu(n: int, folder: Path | None = None) -> int | None:
    """The GPU (0..n-1) this process holds, claiming the first free one on first call; None if all are held.

    GPUs are named by their entry in CUDA_VISIBLE_DEVICES when it is set, so processes that see different
    subsets never share a lock by mistake.
    """
    global _claim
    if _claim is not None:
        return _claim[0]
    import fcntl

    from flipout_repro.rundir import open_append

    folder = folder or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    names = [v.strip() for v in visible.split(",")] if visible else [str(k) for k in range(n)]
    for k in range(n):
        fh = open_append(folder / f"gpu{names[k] if k < len(names) else k}.lock")  # a link: refused
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        _claim = (k, fh)
        return k
    return None


def job_device() -> str:
    """``device`` for one job of a sweep: ``auto`` with at most one GPU, else ``cuda:<k>`` (see module doc)."""
    n = gpu_count()
    if n <= 1:
        return "auto"
    k = claim_gpu(n)
    if k is None:
        k = _job_num() % n
    return f"cuda:{k}"


def _job_num() -> int:
    from hydra.core.hydra_config import HydraConfig

    try:
        return int(HydraConfig.get().job.num)
    except Exception:  # not inside a Hydra job, or a single run (job.num unset)
        return 0


def local_jobs() -> int:
    """Default parallelism of the local (joblib) launcher: one job per GPU, or 2 on a CPU-only machine."""
    return gpu_count() or 2


def paper_batches(dataset: str) -> int:
    """``${paper_batches:${dataset.name}}``, Iterative SNIP's and FORCE's ``batches`` default: each pruning
    step averages the gradients of 10 batches on CIFAR-100 and of 1 elsewhere (de Jorge et al. 2021)."""
    return 10 if dataset == "cifar100" else 1


def register_resolvers() -> None:
    """Register ``job_device``, ``local_jobs`` and ``paper_batches`` (idempotent)."""
    for name, fn in (("job_device", job_device), ("local_jobs", local_jobs), ("paper_batches", paper_batches)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
