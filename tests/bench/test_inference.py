"""flipout-bench --inference: CSR Linear layers compute what the dense ones do, the benchmark of a tiny
network and of a finished quickstart run writes its JSON and the speed-ups, bad input fails cleanly."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from flipout_repro.bench.inference import CSRLinear, bench_inference, sparse_model
from flipout_repro.cli.bench import main
from flipout_repro.sparsity.masking import Masks


def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    masks = Masks.for_model(model)
    masks.values[0].zero_()
    masks.values[0][0, :2] = 1  # 2 of 48 kept
    masks.values[1][:, :3] = 0  # 9 of 18 kept
    masks.active = True
    masks.apply_to_weights()
    return model, masks


def test_csr_linear_matches_the_dense_layer_and_stores_only_kept_weights():
    model, masks = tiny()
    lin = model[1]
    csr = CSRLinear(lin)
    assert csr.weight.layout == torch.sparse_csr and csr.weight.values().numel() == 2
    x = torch.randn(5, 8)
    assert torch.allclose(csr(x), lin(x), atol=1e-6)
    assert csr(torch.randn(2, 4, 8)).shape == (2, 4, 6)
    sparse, replaced = sparse_model(model, masks)
    assert replaced == ["1", "3"] and isinstance(sparse[3], CSRLinear) and isinstance(model[3], nn.Linear)
    x = torch.randn(7, 2, 4)
    assert torch.allclose(sparse(x), model(x), atol=1e-6)


def test_bench_of_a_tiny_network():
    model, masks = tiny()
    r = bench_inference(model, masks, (2, 4), batches=(1, 64), warmup=1, repeats=3)
    assert set(r["batches"]) == {"1", "64"} and r["csr_layers"]["1"]["sparsity"] == pytest.approx(46 / 48)
    for v in r["batches"].values():
        assert v["dense_ms"] > 0 and v["sparse_ms"] > 0
        assert v["speedup"] == pytest.approx(v["dense_ms"] / v["sparse_ms"])
        assert v["max_abs_output_diff"] < 1e-5 and set(v["linear_layers"]) == {"1", "3"}
    json.dumps(r)  # JSON-ready


def test_flipout_bench_inference_on_a_finished_run(quick_cfg, capsys):
    from flipout_repro.run import run

    s = run(quick_cfg("method=global_magnitude", "epochs=3", "sparsity=0.75"))
    main(["--inference", s["run_dir"], "--batches", "1", "4", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "speed-up" in out and "Linear layers as sparse CSR: " in out
    r = json.loads((Path(s["run_dir"]) / "inference.json").read_text())
    assert r["method"] == "global_magnitude" and set(r["batches"]) == {"1", "4"} and len(r["csr_layers"]) == 3
    assert r["batches"]["4"]["max_abs_output_diff"] < 1e-4
    summary = json.loads((Path(s["run_dir"]) / "summary.json").read_text())
    assert summary["inference"]["speedup_b4"] == pytest.approx(r["batches"]["4"]["speedup"])
    assert summary["final_test_acc"] == s["final_test_acc"]  # the rest of the summary is kept


def test_bad_input_fails_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--inference", str(tmp_path / "nope")])
    assert exc.value.code == 2 and "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--inference", str(tmp_path), "--batches", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--batches=[0]" in err and "must be >= 1" in err
