"""Experiment trackers beside TensorBoard: ``logger=wandb`` (Weights & Biases) or ``logger=mlflow`` streams a
run's scalars (the tags and x values TensorBoard gets, training/metrics_log.scalars and
analysis/run_end.run_end_scalars), its resolved config and, at its end, its summary. TensorBoard's ``tb/``
is written whatever ``logger`` says; ``logger=tensorboard`` (the default) adds nothing.

Nothing is written outside ``results_dir``:

- W&B's files go to ``<run folder>/wandb`` (and its cache there, unless ``WANDB_CACHE_DIR`` is set). With
  ``WANDB_MODE=offline`` nothing leaves the machine; ``wandb sync <run folder>/wandb/offline-run-*``
  uploads it later. ``WANDB_PROJECT`` and ``WANDB_ENTITY`` choose where runs go (project ``flipout-repro``).
- MLflow logs to ``MLFLOW_TRACKING_URI`` when it is set (a server), else to a file store at
  ``<results_dir>/mlruns`` (``mlflow ui --backend-store-uri <results_dir>/mlruns``); one experiment per model
  and data set. MLflow's telemetry is off unless ``MLFLOW_DISABLE_TELEMETRY`` says otherwise.

Each attempt of a run (a resume too) is one tracker run that gets every record of metrics.jsonl once: a
resumed attempt replays the records kept, as TensorBoard's are rebuilt. W&B groups the attempts of a run
by its identity hash and seed. Whether the extra is installed and the service reachable is checked before
anything is written (config/checks.tracker_problem).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flipout_repro.config.identity import Identity, flatten
from flipout_repro.rundir import RunDir
from flipout_repro.training.metrics_log import PER_STEP

#: W&B's project when ``WANDB_PROJECT`` is not set
WANDB_PROJECT = "flipout-repro"
#: where the MLflow file store goes under results_dir when ``MLFLOW_TRACKING_URI`` is not set
MLFLOW_FOLDER = "mlruns"


class Tracker:
    """``logger=tensorboard``: nothing beside TensorBoard. The base of the trackers."""

    finished = False

    def scalars(self, items: list[tuple[str, float, int]]) -> None:
        """``(tag, value, x)`` triples of one record, or of the run's end."""

    def finish(self, summary: dict[str, Any] | None) -> None:
        """The run's end, once: its summary (None: the attempt failed or was stopped)."""
        if not self.finished:
            self.finished = True
            self._end(summary)

    def _end(self, summary: dict[str, Any] | None) -> None:
        """What a tracker does at the run's end."""


def open_tracker(cfg: DictConfig, run_dir: RunDir, ident: Identity) -> Tracker:
    """The tracker ``cfg.logger`` names, its run started with the resolved config."""
    kind = {"wandb": WandbTracker, "mlflow": MlflowTracker}.get(str(cfg.logger), Tracker)
    return kind(cfg, run_dir, ident) if kind is not Tracker else Tracker()


def _name(cfg: DictConfig, ident: Identity) -> str:
    return f"{ident.axes_label(with_sparsity=True)} seed {cfg.seed}"


def _numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's top-level numbers and words (a tracker's run summary holds no nested objects)."""
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


class WandbTracker(Tracker):
    """Weights & Biases: ``per_epoch/*`` and ``run_end/*`` over ``epoch``, ``per_step/*`` over
    ``optimizer_step`` (W&B's own step counts log calls)."""

    def __init__(self, cfg: DictConfig, run_dir: RunDir, ident: Identity) -> None:
        import wandb

        folder = run_dir.path / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        _inside("WANDB_CACHE_DIR", folder / "cache")  # its own logs go there: never ~/.cache
        _inside("WANDB_DATA_DIR", folder / "data")
        self.run = wandb.init(dir=str(run_dir.path), project=os.environ.get("WANDB_PROJECT") or WANDB_PROJECT,
                              name=_name(cfg, ident), group=f"{ident.hash}-seed{cfg.seed}",
                              config=OmegaConf.to_container(cfg, resolve=True),
                              tags=[f"{cfg.model.name}-{cfg.dataset.name}", str(cfg.method.name)])
        self.run.define_metric("epoch")
        self.run.define_metric("optimizer_step")
        self.run.define_metric(f"{PER_STEP}/*", step_metric="optimizer_step")
        self.run.define_metric("per_epoch/*", step_metric="epoch")
        self.run.define_metric("run_end/*", step_metric="epoch")

    def scalars(self, items: list[tuple[str, float, int]]) -> None:
        by_x: dict[tuple[str, int], dict[str, float]] = {}
        for tag, value, x in items:
            axis = "optimizer_step" if tag.startswith(f"{PER_STEP}/") else "epoch"
            by_x.setdefault((axis, x), {axis: x})[tag] = value
        for row in by_x.values():
            self.run.log(row)

    def _end(self, summary: dict[str, Any] | None) -> None:
        if summary is not None:
            self.run.summary.update(_numbers(summary))
        self.run.finish(exit_code=0 if summary is not None and summary.get("status") == "completed" else 1)


class MlflowTracker(Tracker):
    """MLflow: one run per attempt in the experiment ``<model>-<dataset>``; the flattened config as its
    parameters, each scalar a metric at its x, summary.json an artifact."""

    def __init__(self, cfg: DictConfig, run_dir: RunDir, ident: Identity) -> None:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_store(cfg.results_dir)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # it would write under ~/.config
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for a database otherwise
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._metric, self.client = Metric, MlflowClient(tracking_uri=uri)
        name = f"{cfg.model.name}-{cfg.dataset.name}"
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                experiment = self.client.create_experiment(name)
            except Exception:  # noqa: BLE001 - another job of the sweep created it first
                experiment = self.client.get_experiment_by_name(name).experiment_id
        else:
            experiment = found.experiment_id
        tags = {"hash": ident.hash, "seed": str(cfg.seed), "run_dir": str(run_dir.path)}
        self.id = self.client.create_run(experiment, run_name=_name(cfg, ident), tags=tags).info.run_id
        params = [Param(k, str(v)[:500]) for k, v in flatten(OmegaConf.to_container(cfg, resolve=True)).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.id, params=params[i:i + 100])

    def scalars(self, items: list[tuple[str, float, int]]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(tag, float(value), now, int(x)) for tag, value, x in items]
        for i in range(0, len(metrics), 1000):  # and at most 1000 metrics
            self.client.log_batch(self.id, metrics=metrics[i:i + 1000])

    def _end(self, summary: dict[str, Any] | None) -> None:
        if summary is not None:
            self.client.log_dict(self.id, summary, "summary.json")
        ok = summary is not None and summary.get("status") == "completed"
        self.client.set_terminated(self.id, "FINISHED" if ok else "FAILED")


def mlflow_store(results_dir: str | Path) -> str:
    """The MLflow file store's URI inside ``results_dir``."""
    return (Path(results_dir) / MLFLOW_FOLDER).resolve().as_uri()


#: the environment variables this process set for a run's W&B folders (a later run of a sweep moves them)
_SET: dict[str, str] = {}


def _inside(var: str, folder: Path) -> None:
    """Point W&B's ``var`` into this run's folder, unless the user set it."""
    if var in os.environ and os.environ[var] != _SET.get(var):
        return
    _SET[var] = os.environ[var] = str(folder)
