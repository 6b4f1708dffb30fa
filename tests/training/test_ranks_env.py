"""How the ranks of a SLURM multi-task job (hydra/launcher=slurm_multi) find each other: SLURM's
variables mapped to torch.distributed's (training/ranks_env.py)."""
import os

import pytest
import yaml

from helpers import REPO
from flipout_repro.training.ranks_env import export_slurm, first_host, from_slurm, world

# what SLURM sets in task 5 of a 2-node x 4-task job (srun / submitit with tasks_per_node=4)
SLURM = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "4242",
         "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_NNODES": "2"}


@pytest.mark.parametrize("nodelist, host", [
    ("gpu[07-08]", "gpu07"), ("node7", "node7"), ("a1,b2", "a1"), ("gpu[03-05,09],cpu1", "gpu03"),
    ("dgx-a100-[001,004]", "dgx-a100-001"), ("n[9]", "n9"),
])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_slurm_task_variables_map_to_torch_distributed():
    assert from_slurm(SLURM) == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07",
                                 "MASTER_PORT": str(20000 + 4242)}
    assert from_slurm(SLURM | {"SLURM_JOB_ID": "123456789"})["MASTER_PORT"] == str(20000 + 123456789 % 20000)
    old = {k: v for k, v in SLURM.items() if k != "SLURM_JOB_NODELIST"} | {"SLURM_NODELIST": "x[1-2]"}
    assert from_slurm(old)["MASTER_ADDR"] == "x1"


def test_one_task_or_no_slurm_maps_nothing():
    assert from_slurm({}) == {}
    assert from_slurm(SLURM | {"SLURM_NTASKS": "1"}) == {}


def test_export_fills_the_environment_and_world_reads_it(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(k, "x")  # recorded, so that what export_slurm sets is removed after the test
        monkeypatch.delenv(k)
    assert world() == (0, 1, 0)
    for k, v in SLURM.items():
        monkeypatch.setenv(k, v)
    added = export_slurm()
    assert set(added) == {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    assert world() == (5, 8, 1)
    monkeypatch.undo()
    assert "RANK" not in os.environ and world() == (0, 1, 0)  # nothing leaks into later tests


def test_torchrun_variables_win():
    env = dict(SLURM, RANK="0", WORLD_SIZE="2", LOCAL_RANK="0")  # torchrun inside a one-task SLURM job
    assert export_slurm(env) == {} and env["RANK"] == "0"
    env = dict(SLURM, MASTER_PORT="29500")  # a port the user set is kept
    export_slurm(env)
    assert env["MASTER_PORT"] == "29500" and env["RANK"] == "5"


def test_the_multi_gpu_preset_starts_one_task_per_gpu():
    preset = yaml.safe_load((REPO / "conf/hydra/launcher/slurm_multi.yaml").read_text())
    assert preset["defaults"][0] == "submitit_slurm"
    assert preset["tasks_per_node"] == preset["gpus_per_node"]
    assert preset["nodes"] >= 1 and preset["partition"] is None
