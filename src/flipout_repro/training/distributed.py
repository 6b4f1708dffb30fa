"""Data-parallel training over torch.distributed (``torchrun``, or SLURM tasks: training/ranks_env.py).

Every rank holds the whole model and runs the same loop; per step it computes the gradient of its shard of
the global batch (training/shard.py), and :meth:`GradSync.all_reduce` averages the gradients over ranks,
weighted by shard size, so that every rank holds the gradient of the whole batch: the same quantity a
single process computes (up to float rounding), on every rank bit for bit. Everything a method does after
that (FlipOut's noise, flip counting, scores, prune events) then sees identical inputs on every rank.

Why an explicit all-reduce and not DistributedDataParallel: the method hooks must run between the
all-reduce and the optimizer step (FlipOut's noise is scaled by the averaged gradient's norm), which DDP
allows, but DDP also wraps the module (the compiled forward, the regulariser and the hooks see the bare
model), needs a non-empty forward on every rank (the last, short batch of an epoch may leave a rank
nothing when a shard is weighted by its size) and re-broadcasts BatchNorm buffers in every forward. The
explicit all-reduce is one flat buffer per step; what it gives up is DDP's overlap of communication with
the backward pass (estimated a few per cent of a step on NVLink; not measured).

The random streams stay identical on every rank without being synchronised: each rank seeds them alike,
augments the whole global batch before taking its shard (data generator), and the global stream (FlipOut's
noise, random scores, re-initialisation) is drawn only by method code, which runs identically everywhere
(no model here draws in its forward: no dropout).
"""
from __future__ import annotations

import atexit
import logging
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from flipout_repro.training import checkpoint, ranks_env
from flipout_repro.training.trainer import TrainState

log = logging.getLogger("flipout_repro")


def world_size() -> int:
    """Ranks in the job (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without torch.distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run folder (rank 0, or the only process)."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the job's process group when the environment names more than one rank (torchrun, or SLURM
    tasks), and return the device this rank trains on: ``cuda:LOCAL_RANK`` on GPUs, the CPU otherwise.

    gloo on CPUs, NCCL on GPUs. Idempotent (a sweep calls it once per job). Ranks other than 0 log
    warnings and errors only. In a plain process: ``device`` unchanged, nothing initialised.
    """
    ranks_env.export_slurm()
    r, n, local = ranks_env.world()
    if n <= 1:
        return device
    if device.type == "cuda":
        if device.index not in (None, local):
            log.warning("device=%s ignored: rank %d of a data-parallel job trains on cuda:%d (LOCAL_RANK)",
                        device, r, local)
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=r, world_size=n)
        atexit.register(_leave)
    if r != 0:
        logging.getLogger("flipout_repro").setLevel(logging.WARNING)
    return device


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def send_start(objs: dict[str, Any] | None, state: TrainState | None = None) -> None:
    """Rank 0: hand the other ranks the state to start from (``objs``: the model, optimizer, scheduler,
    masks, method and generator, fresh or restored from the checkpoint), or None: nothing to train (the
    run had finished). Nothing in a single process."""
    if world_size() == 1:
        return
    payload = None if objs is None else _to_cpu(checkpoint.snapshot(state=state, **objs))
    dist.broadcast_object_list([payload], src=0)


def receive_start(objs: dict[str, Any]) -> TrainState | None:
    """Ranks other than 0: load rank 0's start state into ``objs`` (the objects this rank built); None
    when rank 0 trains nothing. All ranks then hold the same weights, optimizer and method state, the same
    generators and the same position."""
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    if box[0] is None:
        return None
    return checkpoint.restore(box[0], "rank 0's start state", **objs)


def _to_cpu(x: Any) -> Any:
    """``x`` with every tensor on the CPU (a pickled CUDA tensor would unpickle on rank 0's GPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x


class GradSync:
    """The per-step and per-epoch collective operations of the training loop (Trainer.dist)."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.world = world_size()
        self.stop = False  # the stop request agreed by all ranks (one step late, so no step waits on it)
        self._flag: torch.Tensor | None = None
        #: each rank's [loss sum, correct, seen] at the last :meth:`settle`, when they partition the total
        self.rank_sums: list[list] | None = None

    def all_reduce(self, n_local: int, stop_requested: bool) -> None:
        """Replace each gradient by the mean over all ranks' samples: sum_r n_r g_r / sum_r n_r, and
        agree on a stop request (any rank's).

        One flat buffer holds every gradient (times this rank's sample count), the count and the stop flag.
        A parameter without a gradient (unused in the step: the same on every rank, which runs the same
        graph) contributes zeros and keeps none, so the optimizer skips it as it does in one process.
        """
        dev = self.params[0].device
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        tail = torch.tensor([float(n_local), float(stop_requested)], device=dev, dtype=grads[0].dtype)
        flat = torch.cat([g.reshape(-1) * n_local for g in grads] + [tail])
        dist.all_reduce(flat)
        total = flat[-2]
        offset = 0
        for p, g in zip(self.params, grads):
            n = g.numel()
            if p.grad is not None:
                p.grad = flat[offset:offset + n].view_as(g).div_(total).to(g.dtype)
            offset += n
        previous, self._flag = self._flag, flat[-1:]
        if previous is not None and not self.stop:
            self.stop = bool(previous.item() > 0)

    def start_sums(self, partial: dict) -> tuple[list[float], list[float]]:
        """(this rank's starting sums, the base :meth:`settle` subtracts) of an epoch's loss sum, correct count
        and sample count, from a resumed half epoch's ``partial`` (empty: a fresh epoch, zeros). A checkpoint of
        as many ranks holds each rank's own sums: each rank goes on from its own, so the epoch's float32 sums
        and their total are bit for bit those of an uninterrupted run. Otherwise (another rank count) every
        rank starts from the total and :meth:`settle` adds it back once."""
        own = partial.get("ranks")
        if own is not None and len(own) == self.world:
            return list(own[rank()]), [0.0, 0.0, 0.0]
        total = [partial.get("loss_sum", 0.0), partial.get("correct", 0), partial.get("seen", 0)]
        return total, list(total)

    def settle(self, model: nn.Module, sums: list[float | torch.Tensor], base: list[float]) -> list[float]:
        """At an epoch's end or a stop: the epoch's sums over all ranks (each rank started from ``base``,
        see :meth:`start_sums`), and BatchNorm running statistics averaged over ranks, so that every rank
        evaluates and checkpoints the same model. :attr:`rank_sums` then holds each rank's own sums when they
        partition the total (``base`` zero), else None."""
        dev = self.params[0].device
        mine = torch.tensor([float(s) for s in sums], device=dev, dtype=torch.float64)
        gathered = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(gathered, mine)
        buffers = [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for b in (m.running_mean, m.running_var) if b is not None]
        if buffers:
            flat = torch.cat([b.reshape(-1).float() for b in buffers])
            dist.all_reduce(flat)
            flat /= self.world
            offset = 0
            for b in buffers:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()
        per_rank = [g.tolist() for g in gathered]  # in rank order: the same total on every rank
        out = [b + sum(r[i] - b for r in per_rank) for i, b in enumerate(base)]
        self.rank_sums = [[r[0], int(r[1]), int(r[2])] for r in per_rank] if not any(base) else None
        return [out[0], *(int(round(v)) for v in out[1:])]  # loss sum; counts (exact in float64)
