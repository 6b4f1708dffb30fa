"""Each rank's piece of every global batch (training/shard.py): the pieces of all ranks, put together, are
the single-process batches, for in-memory and streamed sets, from any resume position."""
import numpy as np
import pytest
import torch
from PIL import Image

from flipout_repro.errors import ConfigError
from flipout_repro.data import TensorData, load
from flipout_repro.training.shard import ShardedData, check_batches, piece, shard


def image_folder(root, per_class=(5, 1)):
    """2 classes x 5 train (10 images) and 1 val JPEGs of 40x40 in ImageNet's folder layout."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for wnid in ("n01", "n02"):
            (root / split / wnid).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / split / wnid / f"{i}.JPEG")
    return load("imagenet", root, False, torch.device("cpu"), [0.5] * 3, [0.25] * 3, 0, True, image_size=16,
                eval_resize=20, workers=0, num_classes=2)


@pytest.mark.parametrize("m, world, sizes", [(8, 2, [4, 4]), (7, 2, [4, 3]), (10, 4, [3, 3, 2, 2]), (4, 4, [1, 1, 1, 1])])
def test_pieces_are_tensor_split_sizes_and_cover_the_batch(m, world, sizes):
    bounds = [piece(m, r, world) for r in range(world)]
    assert [e - b for b, e in bounds] == sizes == [len(t) for t in torch.arange(m).tensor_split(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == m
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(world - 1))


def test_batch_size_must_divide_and_the_last_batch_must_reach_every_rank():
    check_batches(100, 32, 2)  # last batch 4 >= 2
    check_batches(96, 32, 4)  # no short batch
    with pytest.raises(ConfigError, match=r"batch_size=30 must be a multiple of the 4 ranks.*e.g. batch_size=28"):
        check_batches(100, 30, 4)
    with pytest.raises(ConfigError, match="leaves the last batch of the 97 training images 1 image"):
        check_batches(97, 32, 2)


def tensor_data(n=23):
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 5
    z = torch.zeros(1, 1, 1, 1)
    return TensorData(x, y, x[:4], y[:4], z, z + 1, crop_padding=2, flip=True)


def joined(pieces):
    return [torch.cat(parts) for parts in zip(*pieces)]


@pytest.mark.parametrize("start", [0, 2])
def test_in_memory_pieces_rebuild_the_single_process_batches_and_keep_the_generator(start):
    data, world = tensor_data(), 2
    g = torch.Generator().manual_seed(0)
    order = data.epoch_order(g)
    state = g.get_state()
    single = list(data.train_batches(8, g, order, start))
    after_single = g.get_state()
    per_rank = []
    for r in range(world):
        g.set_state(state)
        per_rank.append(list(ShardedData(data, r, world).train_batches(8, g, order, start)))
        assert torch.equal(g.get_state(), after_single)  # every rank drew what one process draws
    assert len(per_rank[0]) == len(single) == 3 - start
    for k, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([per_rank[r][k][0] for r in range(world)]), x)  # augmented alike
        assert torch.equal(torch.cat([per_rank[r][k][1] for r in range(world)]), y)
    assert [len(b[1]) for b in per_rank[1]] == [4, 4, 3][start:]  # 23 = 8 + 8 + 7: the short batch split 4/3


def test_streamed_pieces_decode_only_the_ranks_images_and_rebuild_the_batches(tmp_path):
    data = image_folder(tmp_path)  # 10 training images
    g = torch.Generator().manual_seed(0)
    order = data.epoch_order(g)
    for start in (0, 1):
        single = list(data.train_batches(4, g, order, start))
        per_rank = [list(ShardedData(data, r, 2).train_batches(4, g, order, start)) for r in range(2)]
        assert [len(b[1]) for b in per_rank[0]] == [2, 2, 1][start:]  # 10 = 4+4+2: the short one split 1/1
        assert [len(b[1]) for b in per_rank[1]] == [2, 2, 1][start:]
        assert len(single) == 3 - start
        for k, (x, y) in enumerate(single):
            parts = [p[k] for p in per_rank if k < len(p)]
            assert torch.equal(torch.cat([p[0] for p in parts]), x)
            assert torch.equal(torch.cat([p[1] for p in parts]), y)


def test_one_process_is_unwrapped_and_delegates_everything_else():
    data = tensor_data()
    assert shard(data, 8, 0, 1) is data
    s = shard(data, 8, 1, 2)
    assert s.steps_per_epoch(8) == 3 and s.image_size == 8 and s.train_y is data.train_y
    assert [len(y) for _, y in s.test_batches(3)] == [3, 1]  # evaluation is not sharded
    with pytest.raises(ConfigError, match="leaves the last batch"):
        shard(tensor_data(17), 8, 0, 2)
