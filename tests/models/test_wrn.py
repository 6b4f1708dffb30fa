"""WRN-22-2: its parameter count by hand, its shape, the 1x1 shortcuts only where the channels change,
dropout only in training, and bad depths refused."""
import pytest
import torch

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.masking import Masks, count_prunable
from flipout_repro.models.wrn import WideResNet
from flipout_repro.training.build import build_model

# stem 3*16*9; group 1 (16 -> 32): 16*32*9 + 32*32*9 + 16*32 (1x1) + 2 blocks * 2 * 32*32*9; group 2 and 3 alike
# with 32 -> 64 and 64 -> 128; Linear 128*10
PRUNABLE = 432 + (4608 + 9216 + 512 + 36864) + (18432 + 36864 + 2048 + 147456) \
    + (73728 + 147456 + 8192 + 589824) + 1280
# BatchNorm: 2 per channel of 16+32+4*32, 32+64+4*64, 64+128+4*128 and the last 128; the Linear's bias
PARAMS = PRUNABLE + 2 * (176 + 352 + 704 + 128) + 10


def test_wrn22_2_parameter_count_by_hand():
    model = build_model(make_cfg("model=wrn22_2").model, 3, 10, 32)
    assert PRUNABLE == 1_076_912 and PARAMS == 1_079_642
    assert count_prunable(model) == PRUNABLE
    assert sum(p.numel() for p in model.parameters()) == PARAMS
    names = Masks.for_model(model).names
    assert len(names) == 1 + 3 * 3 * 2 + 3 + 1  # stem, 18 block convs, 3 shortcuts, Linear
    assert [n for n in names if "shortcut" in n] == [f"group{g}.0.shortcut.weight" for g in (1, 2, 3)]


def test_shape_and_dropout_only_in_training():
    torch.manual_seed(0)
    model = WideResNet(3, 100, 32)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 100)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no dropout at evaluation
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("override, key", [("model.depth=20", "model.depth"), ("model.widen=0", "model.widen"),
                                           ("model.dropout=1.0", "model.dropout")])
def test_bad_shapes_are_refused(override, key):
    with pytest.raises((ConfigError, ValueError), match=key):
        build_model(make_cfg("model=wrn22_2", override).model, 3, 10, 32)
    validate(make_cfg("model=wrn22_2"))
