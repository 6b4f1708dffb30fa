"""Training multiply-adds (analysis/compute.py): a two-layer toy network over a hand-made mask schedule,
epochs with a short last batch, and a quickstart run whose summary records them."""
import json
from pathlib import Path

import pytest
from torch import nn

from flipout_repro.analysis.compute import prune_records, samples_after, training_macs
from flipout_repro.analysis.layers import output_positions


def toy_layers():
    """Linear(4, 3) -> ReLU -> Linear(3, 2): 12 + 6 = 18 forward multiply-adds per sample when dense."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    return output_positions(model, (4,)), {"0.weight": 12, "2.weight": 6}


def test_two_layer_network_over_a_hand_made_mask_schedule():
    positions, totals = toy_layers()
    assert positions == {"0.weight": 1, "2.weight": 1}
    # 8 steps of 10 samples (n_train 40, batch 10: 4 steps an epoch, 2 epochs); masks: dense for steps 1-2,
    # 6 + 6 kept for steps 3-5 (event at step 2), 3 + 2 kept for steps 6-8 (event at step 5)
    prunes = [{"step": 2, "kept": {"0.weight": 6, "2.weight": 6}},
              {"step": 5, "kept": {"0.weight": 3, "2.weight": 2}}]
    r = training_macs(positions, totals, prunes, total_steps=8, n_train=40, batch_size=10)
    assert r["train_macs_dense"] == 3 * 18 * 10 * 8 == 4320
    assert r["train_macs"] == 3 * 10 * (2 * 18 + 3 * 12 + 3 * 5) == 2610
    assert r["train_macs_fraction"] == pytest.approx(2610 / 4320)
    # an event before the first step (SNIP, pruning at initialisation): every step is sparse
    at_init = training_macs(positions, totals, [{"step": 0, "kept": {"0.weight": 3, "2.weight": 2}}], 8, 40, 10)
    assert at_init["train_macs"] == 3 * 5 * 10 * 8
    # a layer missing from a record keeps its count; no event: the dense run
    partial = training_macs(positions, totals, [{"step": 4, "kept": {"0.weight": 0}}], 8, 40, 10)
    assert partial["train_macs"] == 3 * 10 * (4 * 18 + 4 * 6)
    assert training_macs(positions, totals, [], 8, 40, 10)["train_macs_fraction"] == 1.0


def test_short_last_batch_of_an_epoch():
    # 25 samples, batch 10: steps of 10, 10, 5 per epoch
    assert [samples_after(k, 25, 10) for k in range(7)] == [0, 10, 20, 25, 35, 45, 50]
    positions, totals = toy_layers()
    r = training_macs(positions, totals, [{"step": 2, "kept": {"0.weight": 0, "2.weight": 0}}], 6, 25, 10)
    assert r["train_macs"] == 3 * 18 * 20 and r["train_macs_dense"] == 3 * 18 * 50


def test_prune_records_skip_other_and_cut_lines(tmp_path):
    m = tmp_path / "metrics.jsonl"
    m.write_text("\n".join([json.dumps({"type": "epoch", "epoch": 1}),
                            json.dumps({"type": "prune", "step": 3, "kept": {"a": 1}}),
                            json.dumps({"type": "prune", "step": 4}),  # written before kept counts existed
                            '{"type": "prune", "st']))
    assert prune_records(m) == [{"type": "prune", "step": 3, "kept": {"a": 1}}]
    assert prune_records(tmp_path / "none.jsonl") == []


def test_a_quickstart_run_records_its_training_compute(quick_cfg):
    from flipout_repro.run import run

    s = run(quick_cfg("method=global_magnitude", "epochs=3", "sparsity=0.75"))  # events after epochs 1 and 2
    # LeNet-300-100 on 32x32 inputs: 1024*300 + 300*100 + 100*10 = 338200 weights, one position each
    assert s["macs_dense"] == s["prunable"] == 338_200
    records = prune_records(Path(s["run_dir"]) / "metrics.jsonl")
    assert records and all(sum(r["kept"].values()) < 338_200 for r in records)
    assert [r["step"] for r in records] == sorted(r["step"] for r in records)
    assert 0 < s["train_macs_fraction"] < 1 and s["train_macs"] < s["train_macs_dense"]
    assert s["train_macs_dense"] % (3 * 338_200) == 0  # 3 x dense forward x samples seen
    # by hand: epoch 1 dense, epoch 2 at the first event's kept weights, epoch 3 at the second's
    assert len(records) == 2 and records[1]["step"] == 2 * records[0]["step"]
    kept = [sum(r["kept"].values()) / 338_200 for r in records]
    assert s["train_macs_fraction"] == pytest.approx((1 + kept[0] + kept[1]) / 3)
    assert kept[1] == pytest.approx(0.25, abs=1e-5)
