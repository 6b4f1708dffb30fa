"""Thin console entry points: flipout-train (train.py), flipout-report (report.py), flipout-quantize and
flipout-export (finished_run.py), flipout-bench (bench.py); failures.py gives them one failure style.
Nothing in the package imports this folder.
"""
