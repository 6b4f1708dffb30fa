"""Where a process stands in a data-parallel job: rank, world size, local rank, and how the ranks find
each other.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` itself. A SLURM
job whose tasks are the ranks (the ``slurm_multi`` launcher preset: submitit starts ``tasks_per_node``
processes on each of ``nodes`` nodes) has only SLURM's variables; :func:`from_slurm` maps them:

    RANK = SLURM_PROCID, WORLD_SIZE = SLURM_NTASKS, LOCAL_RANK = SLURM_LOCALID,
    MASTER_ADDR = the first host of SLURM_JOB_NODELIST (SLURM_NODELIST on older SLURM),
    MASTER_PORT = 20000 + SLURM_JOB_ID mod 20000 (the same in every task of the job, different for two
    jobs sharing a node unless their ids differ by a multiple of 20000).

Variables that are set already win (a ``torchrun`` inside a one-task SLURM job keeps its own).
"""
from __future__ import annotations

import os
import re
from typing import Mapping, MutableMapping

#: first port of the range MASTER_PORT is taken from under SLURM
PORT_BASE = 20000


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[03-05,09],cpu1`` -> ``gpu03``; ``node7`` -> ``node7``.

    The zero padding of a range is kept (SLURM writes ``gpu[03-05]`` for gpu03, gpu04, gpu05)."""
    nodelist = nodelist.strip()
    if not nodelist:
        raise ValueError("SLURM_JOB_NODELIST is empty: cannot tell the rank-0 host")
    m = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if m is None:
        raise ValueError(f"SLURM_JOB_NODELIST={nodelist!r} is not a SLURM node list")
    prefix, bracket = m.group(1), m.group(3)
    if bracket is None:
        return prefix
    return prefix + bracket.split(",")[0].split("-")[0]


def from_slurm(env: Mapping[str, str]) -> dict[str, str]:
    """The torch.distributed variables for a SLURM task, from ``env`` (SLURM's); {} outside a
    multi-task SLURM job."""
    tasks = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1)
    if tasks <= 1 or "SLURM_PROCID" not in env:
        return {}
    nodelist = env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", ""))
    job = env.get("SLURM_JOB_ID", "0")
    digits = re.sub(r"\D", "", job) or "0"  # an array task id like 1234_5 keeps its digits
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": str(tasks), "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
            "MASTER_ADDR": first_host(nodelist), "MASTER_PORT": str(PORT_BASE + int(digits) % 20000)}


def export_slurm(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the variables :func:`from_slurm` gives, where they are unset, in ``env`` (default os.environ);
    returns what was set."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun (or the user) said it already
        return {}
    added = {k: v for k, v in from_slurm(env).items() if k not in env}
    env.update(added)
    return added


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the environment; (0, 1, 0) in a plain process."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def rank_of(env: Mapping[str, str]) -> int:
    """This process's rank as the environment tells it (torchrun's RANK, else SLURM's task), 0 if none."""
    return int(env.get("RANK", from_slurm(env).get("RANK", 0)))
