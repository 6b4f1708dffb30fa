"""flipout-bench --inference: CSR Linear layers compute what the dense ones do, the benchmark of a tiny
network and of a finished quickstart run writes its JSON and the speed-ups, bad input fails cleanly."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from flipout_repro.bench import inference
from flipout_repro.bench.inference import CSRLinear, bench_inference, format_inference, sparse_model
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
    # real timings on a shared machine: no limit on their spread here (the planted-round tests check the rule)
    main(["--inference", s["run_dir"], "--batches", "1", "4", "--repeats", "2", "--spread-limit", "1e9"])
    out = capsys.readouterr().out
    assert "speed-up" in out and "Linear layers as sparse CSR: " in out
    r = json.loads((Path(s["run_dir"]) / "inference.json").read_text())
    assert r["method"] == "global_magnitude" and set(r["batches"]) == {"1", "4"} and len(r["csr_layers"]) == 3
    assert r["batches"]["4"]["max_abs_output_diff"] < 1e-4
    summary = json.loads((Path(s["run_dir"]) / "summary.json").read_text())
    assert summary["inference"]["speedup_b4"] == pytest.approx(r["batches"]["4"]["speedup"])
    assert summary["final_test_acc"] == s["final_test_acc"]  # the rest of the summary is kept


def planted(monkeypatch, noisy_round=None):
    """Replace the round timer: dense rounds take 2 ms, sparse 1 ms; the ``noisy_round``-th call (counting
    from 1, over every case) takes 10x as long, as if another process had taken the CPU then."""
    calls = {"n": 0}

    def round_ms(model, x, repeats):
        calls["n"] += 1
        base = 1.0 if any(isinstance(m, CSRLinear) for m in model.modules()) else 2.0
        return base * (10.0 if calls["n"] == noisy_round else 1.0)
    monkeypatch.setattr(inference, "_round_ms", round_ms)


def test_a_noisy_round_is_flagged_and_a_steady_one_is_not(monkeypatch):
    model, masks = tiny()
    planted(monkeypatch)
    steady = bench_inference(model, masks, (2, 4), batches=(1,), warmup=0, repeats=1, rounds=3)
    case = steady["batches"]["1"]
    assert case["dense_ms_rounds"] == [2.0, 2.0, 2.0] and case["sparse_ms_rounds"] == [1.0, 1.0, 1.0]
    assert case["speedup"] == 2.0 and case["spread"] == 1.0 and steady["trusted"] and steady["warnings"] == []
    # the first round of the whole network's dense pass (call 1) ran at a tenth of the speed
    planted(monkeypatch, noisy_round=1)
    noisy = bench_inference(model, masks, (2, 4), batches=(1,), warmup=0, repeats=1, rounds=3)
    case = noisy["batches"]["1"]
    assert case["dense_ms_rounds"] == [20.0, 2.0, 2.0] and case["spread"] == 10.0
    assert case["speedup"] == 2.0  # the median of the rounds does not move, but the noise is said
    assert not noisy["trusted"] and noisy["warnings"] == [
        "batch 1, network: rounds dense 20, 2, 2 ms; sparse 1, 1, 1 ms: spread 10.00x > 1.5x (slowest/fastest):"
        " its 2.00x speed-up is not to be trusted"]
    assert "10.00 (!)" in format_inference(noisy) and "WARNING: batch 1, network" in format_inference(noisy)
    # a planted layer round: that layer is named
    planted(monkeypatch, noisy_round=8)  # network: calls 1-6; layer 1: calls 7-12 (dense, sparse, ...)
    layer = bench_inference(model, masks, (2, 4), batches=(1,), warmup=0, repeats=1, rounds=3)
    assert [w.split(":")[0] for w in layer["warnings"]] == ["batch 1, layer 1"]


def test_a_noisy_measurement_writes_no_speed_up_into_the_summary(quick_cfg, capsys, monkeypatch):
    from flipout_repro.run import run

    s = run(quick_cfg("method=global_magnitude", "epochs=2", "sparsity=0.5"))
    folder = Path(s["run_dir"])
    planted(monkeypatch, noisy_round=2)
    with pytest.raises(SystemExit) as exc:
        main(["--inference", s["run_dir"], "--batches", "1", "--repeats", "1", "--rounds", "3"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 1 and len(err.splitlines()) == 1
    assert "spread more than 1.5x" in err and "no speed-up written into" in err and "--rounds/--repeats" in err
    r = json.loads((folder / "inference.json").read_text())
    assert r["trusted"] is False and r["warnings"] and r["rounds"] == 3
    assert "inference" not in json.loads((folder / "summary.json").read_text())
    # a steady measurement writes them; a looser limit accepts the same planted round
    planted(monkeypatch, noisy_round=2)
    main(["--inference", s["run_dir"], "--batches", "1", "--repeats", "1", "--spread-limit", "20"])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["inference"]["speedup_b1"] == pytest.approx(2.0)


def test_bad_input_fails_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--inference", str(tmp_path / "nope")])
    assert exc.value.code == 2 and "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--inference", str(tmp_path), "--batches", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--batches=0 must be >= 1" in err
