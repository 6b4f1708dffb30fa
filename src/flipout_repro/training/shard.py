"""Each rank's shard of every training batch in a data-parallel run (training/distributed.py).

``batch_size`` is the GLOBAL batch: the single-process order of an epoch is cut into the same batches as
in one process, and each batch is split into ``world`` consecutive pieces (sizes as ``torch.tensor_split``:
``batch_size / world`` each, the last, short batch as evenly as it goes), rank ``r`` taking piece ``r``.
Steps per epoch, the schedule's prune steps and the learning-rate schedule are thus those of one process.

In-memory sets (TensorData) augment the whole batch on every rank, then slice it: the augmentation draws
from the run's generator are those of one process, and the generators stay identical on all ranks.
Streamed sets (FolderData) augment each image from (epoch key, image index) alone, so a rank decodes only
its own images. Evaluation is not sharded: every rank evaluates the whole test set (the same numbers,
and no reduction to get wrong; it costs ``world`` times the evaluation work).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch

from flipout_repro.errors import ConfigError
from flipout_repro.data import FolderData


def piece(m: int, rank: int, world: int) -> tuple[int, int]:
    """(begin, end) of rank ``rank``'s piece of a batch of ``m`` samples (torch.tensor_split's sizes)."""
    q, extra = divmod(m, world)
    begin = rank * q + min(rank, extra)
    return begin, begin + q + (1 if rank < extra else 0)


def check_batches(n: int, batch_size: int, world: int) -> None:
    """ConfigError unless every rank gets a share of every batch: ``batch_size`` a multiple of the ranks,
    and the epoch's last, short batch (``n mod batch_size`` samples) at least one sample a rank."""
    if batch_size % world:
        good = max(world, batch_size // world * world)
        raise ConfigError("batch_size", batch_size, f"must be a multiple of the {world} ranks (WORLD_SIZE)"
                          " of this data-parallel job; it is the global batch", f"e.g. batch_size={good}")
    last = n % batch_size
    if 0 < last < world:
        raise ConfigError("batch_size", batch_size, f"leaves the last batch of the {n} training images"
                          f" {last} image(s), fewer than the {world} ranks", "change batch_size by a few")


class ShardedData:
    """A data set whose ``train_batches`` yield this rank's piece of every global batch; everything else
    (``epoch_order``, ``steps_per_epoch``, evaluation batches, labels) is the wrapped set's."""

    def __init__(self, data: Any, rank: int, world: int) -> None:
        self.data, self.rank, self.world = data, rank, world

    def __getattr__(self, name: str) -> Any:
        if name == "data":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.data, name)

    def train_batches(self, batch_size: int, generator: torch.Generator, order: torch.Tensor | None = None,
                      start: int = 0, epoch: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's piece of each global batch of ``order`` (a new one if None), from batch ``start`` on."""
        if order is None:
            order = self.data.epoch_order(generator)
        if isinstance(self.data, FolderData):
            yield from self._folder_batches(batch_size, generator, order, start)
            return
        for x, y in self.data.train_batches(batch_size, generator, order, start, epoch):
            b, e = piece(len(y), self.rank, self.world)
            yield x[b:e], y[b:e]

    def _folder_batches(self, batch_size: int, generator: torch.Generator, order: torch.Tensor,
                        start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rank's images of every batch, in one order of ``batch_size / world``-image batches (every
        piece but the last batch's has exactly that size), keeping the epoch key (order's last entry)."""
        perm, key = order[:-1], order[-1:]
        mine = [perm[s + b:s + e] for s in range(0, len(perm), batch_size)
                for b, e in [piece(min(batch_size, len(perm) - s), self.rank, self.world)]]
        sub = torch.cat([*mine, key])
        yield from self.data.train_batches(batch_size // self.world, generator, sub, start)

    def to(self, device: torch.device) -> "ShardedData":
        """The same shard of the wrapped set moved to ``device``."""
        return ShardedData(self.data.to(device), self.rank, self.world)


def shard(data: Any, batch_size: int, rank: int, world: int) -> Any:
    """``data`` itself in a single process; else its :class:`ShardedData` for ``rank`` (checked first)."""
    if world == 1:
        return data
    check_batches(len(data.train_y), batch_size, world)
    return ShardedData(data, rank, world)
