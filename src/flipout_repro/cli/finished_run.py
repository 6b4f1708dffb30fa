"""Console entry points ``flipout-quantize`` and ``flipout-export`` for a finished run folder.

Bad input (a folder that is not a run, a run without summary.json, missing data) ends with one line on
stderr naming the path and the fix, and exit code 2; a run another process holds, exit code 4 (the
exit codes of cli/failures.py).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Callable

from flipout_repro.cli import failures
from flipout_repro.config.schema import BACKENDS, OBSERVERS

RUN_HELP = "a run folder: results/runs/<model>-<dataset>/<method>/sparsity_<s>/<hash8>/seed_<n>"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer (e.g. 32)")
    return value


def _guard(prog: str, body: Callable[[], None]) -> None:
    """Run ``body`` with INFO logging; failures become one line and an exit code (cli/failures.py)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    failures.guard(prog, body)


def batches_or_all(text: str) -> int | str:
    """argparse type: ``all`` or an integer >= 1."""
    return "all" if text == "all" else positive_int(text)


def quantize_main(argv: list[str] | None = None) -> None:
    """flipout-quantize RUN [--observer ...]: int8 accuracy and zero check into the run's summary."""
    p = argparse.ArgumentParser(prog="flipout-quantize", description=(
        "Post-training static int8 quantization of a finished run (CPU): test accuracy after "
        "quantization and a check that the pruned weights are still zero, written into the run's "
        "summary.json under 'quantization'. Defaults come from the run's config."))
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--observer", choices=[*OBSERVERS, "all"], help="activation/weight observers (default: "
                   "the run's quantization.observer, else histogram); 'all' tries each")
    p.add_argument("--calibration-batches", type=batches_or_all, help="training batches to calibrate on, or all "
                   "(default: the run's quantization.calibration_batches, all = one pass over the training set)")
    p.add_argument("--batch-size", type=positive_int, help="calibration batch size (default: the run's batch_size)")
    p.add_argument("--backend", choices=BACKENDS, help="quantized kernels (default x86)")
    p.add_argument("--eval-batch-size", type=positive_int, default=1000, help="test batch size (default 1000)")
    p.add_argument("--data-root", help="where the data set is, if not the run's dataset.root")
    args = p.parse_args(argv)
    _guard("flipout-quantize", lambda: _quantize(args))


def _quantize(args: argparse.Namespace) -> None:
    import dataclasses

    from flipout_repro.analysis.finished_run import check_run_folder, read_summary, run_config
    from flipout_repro.analysis.quantize import quantize_run_folder, settings_from_config

    run = check_run_folder(args.run)
    read_summary(run)  # a damaged summary fails here, before any work
    base = settings_from_config(run_config(run))
    overrides = {k: v for k, v in (("calibration_batches", args.calibration_batches),
                                   ("batch_size", args.batch_size), ("backend", args.backend)) if v is not None}
    observers = OBSERVERS if args.observer == "all" else [args.observer or base.observer]
    for observer in observers:
        settings = dataclasses.replace(base, observer=observer, **overrides)
        q = quantize_run_folder(run.path, settings, args.data_root, args.eval_batch_size)
        print(f"{observer}: int8 test {q['test_acc']:.2f}% vs fp32 {q['fp32_test_acc']:.2f}% (CPU); pruned "
              f"zeros preserved: {q['zeros_preserved']}")
    print(f"written to {run.summary} under 'quantization'")


def export_main(argv: list[str] | None = None) -> None:
    """flipout-export RUN [--out DIR]: state dicts, per-layer table and sparsity figure of a run."""
    p = argparse.ArgumentParser(prog="flipout-export", description=(
        "Export a finished run's pruned network: a plain state dict and torch.nn.utils.prune's layout "
        "(weight_orig + weight_mask), both full size, a sparse file with only the kept weights "
        "(pruned_sparse.pt, load with flipout_repro.analysis.sparse_export.load_sparse), the per-layer "
        "sparsity figure, and a per-layer table with the file sizes on stdout."))
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--out", help="output folder (default: <run>/export)")
    p.add_argument("--json", action="store_true", help="print the layer report and sizes as JSON")
    args = p.parse_args(argv)
    _guard("flipout-export", lambda: _export(args))


def _export(args: argparse.Namespace) -> None:
    from flipout_repro.analysis.export import export
    from flipout_repro.analysis.finished_run import load_run
    from flipout_repro.analysis.layers import layer_report
    from flipout_repro.analysis.plots import FIGURE_FILE, plot_layer_sparsity, run_title
    from flipout_repro.analysis.size import model_size

    loaded = load_run(args.run, "cpu", with_data=False)
    out = Path(args.out) if args.out else loaded.run.path / "export"
    paths = export(loaded.model, loaded.masks, out)
    report = layer_report(loaded.model, loaded.masks, loaded.input_shape)
    sizes = model_size(loaded.model, loaded.masks)
    figure = plot_layer_sparsity(report["layers"], loaded.run.path / FIGURE_FILE, title=run_title(loaded.cfg))
    file_bytes = {kind: Path(path).stat().st_size for kind, path in paths.items()}
    if args.json:
        print(json.dumps({"files": paths | {"figure": str(figure)}, "file_bytes": file_bytes, "report": report,
                          "model_size": sizes}, indent=2))
        return
    print(format_table(report, sizes))
    for kind, path in paths.items():
        print(f"{kind}: {path} ({file_bytes[kind]:,} B on disk)")
    print(f"figure: {figure} (+ {Path(figure).with_suffix('.pdf').name})")


def format_table(report: dict, sizes: dict) -> str:
    """A plain-text per-layer table with totals, sizes and collapsed layers."""
    lines = [f"{'layer':<34}{'kept/prunable':>20}{'sparsity':>10}{'MACs kept/dense':>24}{'dead out/in':>14}"]
    for name, v in report["layers"].items():
        flag = "  COLLAPSED" if v["collapsed"] else ""
        lines.append(f"{name:<34}{v['remaining']:>9,}/{v['prunable']:<10,}{v['sparsity']:>10.4f}"
                     f"{v['macs_sparse']:>12,}/{v['macs_dense']:<11,}{v['dead_out']:>7}/{v['dead_in']:<6}{flag}")
    lines.append(f"total: {report['remaining']:,}/{report['prunable']:,} kept (sparsity {report['sparsity']:.6f}), "
                 f"MACs {report['macs_sparse']:,} of {report['macs_dense']:,} dense")
    lines.append(f"size: dense fp32 {sizes['dense_fp32_bytes']:,} B, sparse fp32 {sizes['sparse_fp32_bytes']:,} B, "
                 f"sparse int8 {sizes['sparse_int8_bytes']:,} B")
    lines.append(f"collapsed layers: {', '.join(report['collapsed_layers']) or 'none'}")
    return "\n".join(lines)
