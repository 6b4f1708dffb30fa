"""GradSync (training/distributed.py) in 2 real processes over gloo: the all-reduced gradient of uneven
pieces is the whole batch's, the same on both ranks; a stop asked by one rank is agreed one step later;
epoch sums add up from a resumed base; BatchNorm running statistics end averaged and identical."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from flipout_repro.training.distributed import GradSync

pytestmark = pytest.mark.slow  # two processes


def linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def with_batchnorm():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(7, 4, generator=g), torch.randint(0, 2, (7,), generator=g)


PIECES = [(0, 5), (5, 7)]  # uneven: 5 and 2 samples


def worker(rank, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    x, y = batch()
    b, e = PIECES[rank]
    model = linear()
    sync = GradSync(list(model.parameters()))
    nn.functional.cross_entropy(model(x[b:e]), y[b:e]).backward()
    sync.all_reduce(e - b, stop_requested=rank == 1)
    grads, first_stop = [p.grad.clone() for p in model.parameters()], sync.stop
    sync.all_reduce(e - b, stop_requested=False)  # the next step reads the previous step's flag
    bn = with_batchnorm()
    bn(x[b:e])  # training mode: running statistics of this rank's piece
    sums = GradSync(list(bn.parameters())).settle(bn, [10.0 + rank, 3 + rank, 8 + 2 * rank], base=[10.0, 3, 8])
    torch.save({"grads": grads, "stops": (first_stop, sync.stop), "sums": sums,
                "bn": (bn[1].running_mean.clone(), bn[1].running_var.clone())}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_grad_sync_between_two_processes(tmp_path):
    mp.spawn(worker, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(a, b) for a, b in zip(r0["grads"], r1["grads"]))  # bit for bit on both ranks
    x, y = batch()
    whole = linear()
    nn.functional.cross_entropy(whole(x), y).backward()  # one process, the mean over all 7 samples
    for a, p in zip(r0["grads"], whole.parameters()):
        torch.testing.assert_close(a, p.grad)  # (5 * mean of 5 + 2 * mean of 2) / 7, not their plain mean
    assert r0["stops"] == r1["stops"] == (False, True)  # rank 1's request, agreed one step later
    assert r0["sums"] == r1["sums"] == [11.0, 4, 10]  # base + rank 0's (0, 0, 0) + rank 1's (1, 1, 2)
    assert all(torch.equal(a, b) for a, b in zip(r0["bn"], r1["bn"]))
    stats = [piece_stats(x, b, e) for b, e in PIECES]
    torch.testing.assert_close(r0["bn"][0], (stats[0][0] + stats[1][0]) / 2)
    torch.testing.assert_close(r0["bn"][1], (stats[0][1] + stats[1][1]) / 2)


def piece_stats(x, b, e):
    bn = with_batchnorm()
    bn(x[b:e])
    return bn[1].running_mean, bn[1].running_var
