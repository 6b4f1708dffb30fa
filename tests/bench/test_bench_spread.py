"""flipout-bench's trust check on fake round timings: the spread of a method's rounds (slowest/fastest),
the warning above the limit (shown with the limit), and the torch thread count in the table."""
import pytest

from flipout_repro.cli.bench import main as bench_main
from flipout_repro.bench.training import SPREAD_LIMIT, format_table, spread_warnings, summarize_rounds


def result_of(times, limit=SPREAD_LIMIT):
    rows = summarize_rounds(times, batch=100)
    return {"model": "vgg19", "input_shape": [3, 32, 32], "batch_size": 100, "device_name": "cpu-x",
            "device": "cpu", "precision": "fp32", "compile": False, "threads": 7, "rounds": 3,
            "steps_per_round": 5, "process_max_rss_mib": 1.0, "methods": rows, "spread_limit": limit,
            "warnings": spread_warnings(rows, limit)}


def test_busy_baseline_rounds_are_flagged_with_the_limit_and_threads_named():
    # a busy machine: dense 126 / 9.7 / 8.5 ms, flipout steady at 150 ms
    r = result_of({"dense": [0.126, 0.0097, 0.0085], "flipout": [0.150, 0.151, 0.152]})
    dense = r["methods"]["dense"]
    assert dense["spread"] == pytest.approx(126 / 8.5)
    assert dense["step_ms"] == pytest.approx(9.7) and r["methods"]["flipout"]["ratio_to_dense"] == pytest.approx(
        151 / 9.7)
    assert r["methods"]["flipout"]["spread"] == pytest.approx(152 / 150)
    [warning] = r["warnings"]
    assert warning.startswith("dense: rounds 126, 9.7, 8.5 ms spread 14.82x > 1.5x") and "every ratio" in warning
    table = format_table(r)
    assert "torch threads 7" in table and "| dense | 9.70 | 10309 | 1.000 | 14.82 (!) | - |" in table
    assert "spread limit 1.5x (slowest/fastest round): exceeded" in table
    assert "WARNING: dense: rounds" in table


def test_steady_rounds_pass_and_a_method_over_the_limit_is_named():
    steady = result_of({"dense": [0.010, 0.011, 0.0105], "flipout": [0.012, 0.0121, 0.0119]})
    assert steady["warnings"] == []
    assert "spread limit 1.5x (slowest/fastest round): all methods within it" in format_table(steady)
    # just over the limit for one method only; a stricter limit flags both
    one = result_of({"dense": [0.010, 0.011, 0.0105], "flipout": [0.010, 0.0151, 0.012]})
    assert [w.split(":")[0] for w in one["warnings"]] == ["flipout"] and "its x dense ratio" in one["warnings"][0]
    strict = result_of({"dense": [0.010, 0.011, 0.0105], "flipout": [0.010, 0.0151, 0.012]}, limit=1.05)
    assert [w.split(":")[0] for w in strict["warnings"]] == ["dense", "flipout"]


def test_a_spread_limit_below_one_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["--model", "lenet300_100", "--spread-limit", "0.9", "--device", "cpu"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--spread-limit=0.9 must be >= 1" in err and "e.g. --spread-limit 1.5" in err
