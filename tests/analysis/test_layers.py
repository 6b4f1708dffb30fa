"""Per-layer accounting by hand: multiply-adds of small conv and linear layers, dead units, collapse,
model sizes, and the collapse report in the log, the summary entries and TensorBoard."""
import logging
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from flipout_repro.analysis.layers import dead_units, layer_report, output_positions
from flipout_repro.sparsity.masking import Masks
from flipout_repro.analysis.size import model_size, sparse_weight_bytes
from flipout_repro.rundir import RunDir
from flipout_repro.analysis.run_end import at_run_end


class ConvThenLinear(nn.Module):
    """conv 2->3 (3x3, pad 1) on 5x5, stride-2 conv 3->4 (3x3, no pad) -> 2x2, Linear(16, 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(16, 6)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 1))


def masked(model, keep_per_layer):
    """Masks keeping the first ``k`` weights (in flat order) of each layer."""
    masks = Masks.for_model(model)
    for m, k in zip(masks.values, keep_per_layer):
        flat = torch.zeros(m.numel())
        flat[:k] = 1
        m.copy_(flat.view_as(m))
    masks.active = True
    masks.apply_to_weights()
    return masks


def test_multiply_adds_of_conv_and_linear_layers_by_hand():
    model = ConvThenLinear()
    masks = masked(model, [7, 10, 16])
    rep = layer_report(model, masks, (2, 5, 5))
    c1, c2, fc = (rep["layers"][n] for n in ("conv1.weight", "conv2.weight", "fc.weight"))
    # conv1: 3*2*3*3 = 54 weights, 5*5 = 25 output positions
    assert (c1["prunable"], c1["output_positions"], c1["macs_dense"], c1["macs_sparse"]) == (54, 25, 1350, 175)
    # conv2: 4*3*3*3 = 108 weights, (5-3)//2+1 = 2 -> 2*2 = 4 positions
    assert (c2["prunable"], c2["output_positions"], c2["macs_dense"], c2["macs_sparse"]) == (108, 4, 432, 40)
    # fc: 6*16 = 96 weights, one output row
    assert (fc["macs_dense"], fc["macs_sparse"]) == (96, 16)
    assert rep["macs_dense"] == 1350 + 432 + 96 and rep["macs_sparse"] == 175 + 40 + 16
    assert rep["prunable"] == 258 and rep["remaining"] == 33
    assert abs(c1["sparsity"] - (1 - 7 / 54)) < 1e-12


def test_grouped_conv_and_multi_row_linear():
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)  # weight (6, 2, 3, 3)
    rep = layer_report(conv, Masks.for_model(conv), (4, 6, 6))
    assert rep["layers"]["weight"]["macs_dense"] == 6 * 2 * 9 * 36 == 3888
    lin = nn.Linear(5, 3)  # applied to each of 7 rows of a (1, 7, 5) input
    rep = layer_report(lin, Masks.for_model(lin), (7, 5))
    assert rep["layers"]["weight"]["output_positions"] == 7
    assert rep["layers"]["weight"]["macs_dense"] == 3 * 5 * 7


def test_output_positions_leave_batchnorm_statistics_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(4, 3))
    model.train()
    before = model[1].running_mean.clone()
    assert output_positions(model, (1, 6, 6)) == {"0.weight": 16, "2.weight": 8}  # Linear on (1,2,4,4)
    assert torch.equal(model[1].running_mean, before) and model.training


def test_dead_units_on_a_hand_made_mask():
    lin = torch.tensor([[1, 0, 0],
                        [0, 0, 0],  # output 1: nothing in
                        [0, 1, 0],
                        [0, 0, 0]])  # output 3: nothing in; input 2: nothing out
    assert dead_units(lin) == (2, 1)
    conv = torch.ones(3, 2, 2, 2)
    conv[0] = 0  # output channel 0 dead
    conv[:, 1] = 0  # input channel 1 read by no kept weight
    conv[2, 0, 1, 1] = 0  # a single pruned weight kills nothing
    assert dead_units(conv) == (1, 1)
    # groups=2, weight (4, 1, 1, 1): output channels 0,1 read input 0; 2,3 read input 1
    grouped = torch.tensor([1, 1, 0, 0]).view(4, 1, 1, 1)
    assert dead_units(grouped, groups=2) == (2, 1)
    assert dead_units(torch.zeros(5, 7)) == (5, 7)


def test_model_size_by_hand():
    lin = nn.Linear(16, 2)  # 32 weights + 2 biases
    masks = masked(lin, [3])
    # bitmap: 32/8 = 4 B + values; CSR: (value + 2-byte column) per kept weight + 3 row pointers of 4 B
    assert sparse_weight_bytes((2, 16), 3, 4) == {"bitmap": 4 + 12, "csr": 3 * 6 + 12}
    # int8 adds one fp32 scale per output row
    assert sparse_weight_bytes((2, 16), 3, 1) == {"bitmap": 4 + 3 + 8, "csr": 3 * 3 + 12 + 8}
    size = model_size(lin, masks)
    assert size["dense_fp32_bytes"] == 4 * 34
    assert size["sparse_fp32_bitmap_bytes"] == 16 + 8 and size["sparse_fp32_csr_bytes"] == 30 + 8
    assert size["sparse_fp32_bytes"] == 24 and size["sparse_int8_bytes"] == 15 + 8
    assert size["compression_fp32"] == 136 / 24


def test_collapsed_layer_in_log_summary_figure_and_tensorboard(tmp_path, caplog):
    model = ConvThenLinear()
    masks = masked(model, [7, 0, 16])  # conv2 pruned away entirely
    cfg = OmegaConf.create({"method": {"name": "m"}, "model": {"name": "net"}, "dataset": {"name": "d"},
                            "sparsity": 0.9, "seed": 0, "epochs": 3, "quantize": False, "eval_batch_size": 10})
    data = SimpleNamespace(in_channels=2, image_size=5)
    with caplog.at_level(logging.INFO, logger="flipout_repro"):  # a warning at the prune event (collapse.py)
        entries = at_run_end(cfg, model, masks, data, RunDir(tmp_path))
    assert entries["collapsed_layers"] == ["conv2.weight"]
    assert entries["layers"]["conv2.weight"]["collapsed"] and entries["layers"]["conv2.weight"]["dead_out"] == 4
    assert entries["macs_sparse"] == 175 + 0 + 16 and "quantization" not in entries
    assert any("conv2.weight collapsed" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "layer_sparsity.png").read_bytes()[:4] == b"\x89PNG"
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("run_end/layers/collapsed")] == [(3, 1.0)]
    assert acc.Scalars("run_end/layers/final_sparsity/conv2.weight")[0].value == 1.0
