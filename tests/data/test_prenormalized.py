"""data/tensor.py: a split normalised once as a whole gives bit for bit the batches normalised one by one."""
from __future__ import annotations

import torch

from flipout_repro.data import tensor as tensor_mod
from flipout_repro.data.tensor import TensorData


def _data(**kw) -> TensorData:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, -1, 1, 1)
    std = torch.tensor([0.247, 0.243, 0.261]).view(1, -1, 1, 1)
    return TensorData(x[:40], y[:40], x[40:], y[40:], mean, std, val_x=x[:7], val_y=y[:7], **kw)


def _per_batch(d: TensorData, order: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """Batches normalised one by one: gather the uint8 images, then normalise."""
    return [d.normalize(d.train_x[order[b:b + batch]]) for b in range(0, len(order), batch)]


def test_training_batches_are_bitwise_those_normalised_per_batch():
    d = _data()
    order = d.epoch_order(torch.Generator().manual_seed(0))
    got = list(d.train_batches(16, torch.Generator(), order))
    assert d.normalized("train") is not None  # the whole set was normalised once
    want = _per_batch(d, order, 16)
    assert len(got) == len(want) == 3
    for (x, y), w, b in zip(got, want, range(0, 40, 16)):
        assert x.dtype == torch.float32 and torch.equal(x, w)  # equal bits (no NaN here)
        assert torch.equal(y, d.train_y[order[b:b + 16]])
    later = list(d.train_batches(16, torch.Generator(), order, start=2))  # a resumed epoch
    assert len(later) == 1 and torch.equal(later[0][0], want[2])


def test_evaluation_batches_are_bitwise_those_normalised_per_batch():
    d = _data()
    for x, start in zip((x for x, _ in d.test_batches(4)), range(0, 10, 4)):
        assert torch.equal(x, d.normalize(d.test_x[start:start + 4]))
    for x, start in zip((x for x, _ in d.val_batches(3)), range(0, 7, 3)):
        assert torch.equal(x, d.normalize(d.val_x[start:start + 3]))


def test_augmented_or_large_sets_are_normalised_per_batch(monkeypatch):
    d = _data(crop_padding=2, flip=True)
    assert d.normalized("train") is None and d.normalized("test") is not None  # the test set is not augmented
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    order = d.epoch_order(torch.Generator().manual_seed(0))
    x1 = next(d.train_batches(16, g1, order))[0]
    want = d.normalize(tensor_mod.random_crop_flip(d.train_x[order[:16]], 2, True, g2))
    assert torch.equal(x1, want)
    monkeypatch.setattr(tensor_mod, "PRENORMALIZE_MAX_BYTES", 10)
    small = _data()
    assert small.normalized("train") is None and small.normalized("test") is None
    order = small.epoch_order(torch.Generator().manual_seed(0))
    for (x, _), w in zip(small.train_batches(16, torch.Generator(), order), _per_batch(small, order, 16)):
        assert torch.equal(x, w)


def test_a_moved_copy_starts_a_fresh_cache():
    d = _data()
    d.normalized("train")
    moved = d.to("meta")
    assert moved._normalized == {} and moved.train_x.device.type == "meta"
