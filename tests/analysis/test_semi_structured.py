"""The GPU 2:4 semi-structured path of flipout-bench --inference: skipped on a CPU with the reason in the
result, timed beside dense and CSR on a CUDA GPU of compute capability 8.0+."""
import json

import pytest
import torch
from torch import nn

from flipout_repro.bench.inference import bench_inference, semi_structured_bench
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.sparsity.patterns import Pattern


def two_four_net():
    """Linear(64, 32) pruned 2:4 and Linear(32, 6) left dense."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 6))
    masks = Masks.for_model(model)
    prune_to([p.detach().abs() for p in masks.params[:1]] + [torch.ones(6, 32)], masks, 0.5, "global",
             pattern=Pattern("nm", 2, 4))
    masks.values[1].fill_(1.0)  # the second layer stays dense: not 2:4
    return model, masks


def test_on_a_cpu_the_2_4_path_is_skipped_with_the_reason():
    model, masks = two_four_net()
    r = semi_structured_bench(model, masks, device="cpu")
    assert r["layers_2_4"] == ["0"]
    assert r["skipped"].startswith("device cpu: torch.sparse.to_sparse_semi_structured needs a CUDA GPU")
    json.dumps(r)


def test_without_a_2_4_layer_it_says_so():
    model = nn.Sequential(nn.Linear(8, 4))
    r = semi_structured_bench(model, Masks.for_model(model), device="cpu")
    assert r["layers_2_4"] == [] and "no Linear layer has a 2:4 mask" in r["skipped"]


def test_the_inference_bench_carries_the_2_4_record():
    model, masks = two_four_net()
    r = bench_inference(model, masks, (64,), batches=(1,), warmup=1, repeats=2)
    assert r["semi_structured"]["layers_2_4"] == ["0"]
    assert "skipped" in r["semi_structured"] or "batches" in r["semi_structured"]


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
                    reason="needs a CUDA GPU with 2:4 sparse tensor cores (sm80+)")
def test_on_a_gpu_the_2_4_weight_is_converted_and_timed():
    model, masks = two_four_net()
    r = semi_structured_bench(model, masks, batches=(64,), warmup=2, repeats=5, device="cuda")
    rec = r["batches"]["64"]["0"]
    assert rec["padded_shape"] == [32, 64] and rec["layout_problem"] is None
    assert "semi_structured_error" not in rec, rec
    assert rec["semi_structured_ms"] > 0 and rec["dense_ms"] > 0 and rec["max_abs_diff"] < 1e-2
