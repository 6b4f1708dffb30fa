"""The sparse export: bitmap and CSR encodings by hand, and a 99 %-sparse quickstart run exported with
flipout-export whose pruned_sparse.pt loads into a fresh model with the same logits and is a fraction of
the dense files' size."""
import json

import pytest
import torch

from helpers import make_cfg
from flipout_repro.analysis.finished_run import load_run
from flipout_repro.analysis.sparse_export import (SPARSE_FILE, decode_weight, encode_weight, load_sparse,
                                                  pack_bits, unpack_bits)
from flipout_repro.cli.finished_run import export_main
from flipout_repro.models.lenet import LeNet300100
from flipout_repro.run import run


def test_bits_pack_most_significant_first_and_unpack():
    keep = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1, 1], dtype=torch.bool)
    packed = pack_bits(keep)
    assert packed.tolist() == [0b10000001, 0b11000000] and packed.dtype == torch.uint8
    assert torch.equal(unpack_bits(packed, 10), keep)


def test_a_dense_ish_weight_is_a_bitmap_and_a_sparse_one_is_csr():
    w = torch.arange(1.0, 13.0).view(3, 4)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 1, 1]])  # 9 of 12 kept: bitmap 2 + 36 B < CSR
    e = encode_weight(w, mask)
    assert e["encoding"] == "bitmap" and e["values"].tolist() == [1, 2, 4, 6, 7, 8, 9, 11, 12]
    assert torch.equal(decode_weight(e), w * mask)
    big = torch.randn(4, 70000)  # 70,000 columns: 4-byte column indices
    m = torch.zeros(4, 70000)
    m[0, 5], m[2, 69999], m[2, 40000] = 1, 1, 1  # 3 of 280,000 kept: CSR
    e = encode_weight(big, m)
    assert e["encoding"] == "csr" and e["col"].dtype == torch.int32
    assert e["crow"].tolist() == [0, 1, 1, 3, 3] and e["col"].tolist() == [5, 40000, 69999]
    assert torch.equal(decode_weight(e), big * m)
    small = torch.randn(2, 50000)  # <= 65,536 columns: 2-byte indices, 40,000 read back through & 0xFFFF
    m = torch.zeros(2, 50000)
    m[1, 40000] = 1
    e = encode_weight(small, m)
    assert e["col"].dtype == torch.int16 and torch.equal(decode_weight(e), small * m)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    summary = run(make_cfg("experiment=quickstart", f"results_dir={root}", "progress=false", "device=cpu",
                           "epochs=8", "sparsity=0.99", "schedule.rounding=exact", "method=global_magnitude"))
    return summary, root / "exported"


def test_sparse_file_gives_the_same_logits_and_is_small(exported, capsys):
    summary, out = exported
    capsys.readouterr()
    export_main([summary["run_dir"], "--out", str(out), "--json"])
    info = json.loads(capsys.readouterr().out)
    loaded = load_run(summary["run_dir"])
    x, _ = next(loaded.data.test_batches(256))
    torch.manual_seed(5)
    model = load_sparse(LeNet300100(1, 10, 32).eval(), out / SPARSE_FILE)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model.eval()(x))
    assert sum(int((m.weight != 0).sum()) for m in (model.fc1, model.fc2, model.fc3)) <= summary["nonzero"]
    sizes, expected = info["file_bytes"], info["model_size"]["sparse_fp32_bytes"]
    assert sizes["sparse"] < sizes["state_dict"] / 10  # 99 % sparse: a tenth of the dense file, at most
    assert expected <= sizes["sparse"] < expected + 8_000  # size.py's count plus torch.save's overhead
