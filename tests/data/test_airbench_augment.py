"""airbench's augmentation on the in-memory sets: a crop of the image reflect-padded by 2 pixels, each image
mirrored in every other epoch from a flip drawn once per run, and the last, smaller batch left out."""
import pytest
import torch
import torch.nn.functional as F

from flipout_repro.data.tensor import TensorData
from flipout_repro.errors import ConfigError
from flipout_repro.config.validate import validate
from helpers import make_cfg


def data(n=10, **kw):
    g = torch.Generator().manual_seed(3)
    x = torch.randint(1, 256, (n, 3, 6, 6), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    return TensorData(x, y, x[:2], y[:2], torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25), **kw)


def crops(img, pad):
    """Every crop of ``img`` (C x H x W, normalised) reflect-padded by ``pad``, and their mirror images."""
    p = F.pad(img[None], (pad,) * 4, mode="reflect")[0]
    h = img.shape[-1]
    out = [p[:, a:a + h, b:b + h] for a in range(2 * pad + 1) for b in range(2 * pad + 1)]
    return out, [c.flip(-1) for c in out]


def test_reflect_crop_is_a_crop_of_the_reflect_padded_image():
    d = data(crop_padding=2, crop_fill="reflect")
    order = torch.arange(10)
    (x, y), = list(d.train_batches(10, torch.Generator().manual_seed(0), order))
    for i in range(10):
        plain, _ = crops(d.normalize(d.train_x[i:i + 1])[0], 2)
        assert any(torch.equal(x[i], c) for c in plain)  # no flip asked: never mirrored
    # a zero-padded crop would hold the normalised black pixel; a reflected one never does (no pixel is 0)
    black = (0 - 0.5) / 0.25
    assert not (x == black).any()


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    d = data(flip=True).alternating_flips(seed=7)
    again = data(flip=True).alternating_flips(seed=7)
    assert torch.equal(d.flip_coins, again.flip_coins)  # drawn from the seed alone
    order = torch.arange(10)
    norm = d.normalize(d.train_x)
    seen = {}
    for epoch in (1, 2, 3, 4):
        (x, _), = list(d.train_batches(10, torch.Generator().manual_seed(epoch), order, epoch=epoch))
        seen[epoch] = [bool(torch.equal(x[i], norm[i].flip(-1))) for i in range(10)]
        assert all(torch.equal(x[i], norm[i]) or torch.equal(x[i], norm[i].flip(-1)) for i in range(10))
    coins = d.flip_coins.tolist()
    assert seen[1] == coins and seen[3] == coins  # epoch 1 (the source's epoch 0): the drawn flips
    assert seen[2] == [not c for c in coins] and seen[4] == seen[2]  # then every image the other way


def test_drop_last_leaves_out_the_smaller_batch():
    d = data(n=10, drop_last=True)
    assert d.steps_per_epoch(4) == 2 and data(n=10).steps_per_epoch(4) == 3
    batches = list(d.train_batches(4, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [4, 4]


@pytest.mark.parametrize("overrides, key", [
    (["dataset.flip=false", "dataset.flip_alternate=true"], "dataset.flip_alternate"),
    (["dataset.crop_padding=0", "dataset.crop_fill=reflect"], "dataset.crop_fill"),
    (["dataset=imagenet", "dataset.drop_last=true"], "dataset.drop_last"),
])
def test_keys_that_do_not_apply_are_refused(overrides, key):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert str(err.value).startswith(key) and "\n" not in str(err.value)
