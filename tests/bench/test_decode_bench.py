"""scripts/decode_bench.py (gpu_check.sh's decode_bench step) on the CPU, tiny: it writes an ImageNet-format
folder the streamed loader reads, times both dataset.decode settings and finds their pixels within a grey level."""
import importlib.util
import json

from helpers import REPO

spec = importlib.util.spec_from_file_location("decode_bench", REPO / "scripts" / "decode_bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_decode_bench_on_the_cpu(tmp_path):
    out = tmp_path / "decode.json"
    r = bench.main([str(tmp_path / "jpeg"), "--out", str(out), "--device", "cpu", "--images", "20", "--batch-size",
                    "8", "--workers", "0", "--size", "32", "--eval-resize", "36", "--width", "60", "--height", "40"])
    assert json.loads(out.read_text()) == r
    assert len(list((tmp_path / "jpeg" / "train").glob("*/*.JPEG"))) == 20
    assert len(list((tmp_path / "jpeg" / "val").glob("*/*.JPEG"))) == 10
    assert r["workers"] == 0 and set(r["decode"]) == {"workers", "device"}
    assert all(v["epoch_s"] > 0 and v["images_per_s"] > 0 for v in r["decode"].values())
    assert r["pixel_diff_grey_levels"]["max"] <= 2 and r["pixel_diff_grey_levels"]["mean"] < 0.5
