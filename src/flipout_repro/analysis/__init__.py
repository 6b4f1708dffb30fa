"""One pruned network after training: per-layer accounting, size, int8 quantization, export, figures,
reloading a finished run folder, and what happens after a run's last epoch.

Imports training (to rebuild a model and evaluate it), config and the leaves; never run or reporting.
"""
