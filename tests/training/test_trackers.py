"""logger=wandb and logger=mlflow: a run on the bundled subset streams the scalars TensorBoard gets (same
tags, same x, same values), its config and its summary, offline, inside results_dir; a missing extra or
service is one line before anything is written."""
import glob
import json
import struct
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from flipout_repro.errors import ConfigError
from flipout_repro.run import run
from flipout_repro.config.validate import validate

#: SET: prune events, mask updates (per optimizer step) and epochs, 2 epochs
ARGS = ["method=set", "epochs=2", "sparsity=0.9", "method.update_every=20"]


def tensorboard(run_dir):
    acc = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def same(got, tb):
    """The tracker's scalars are TensorBoard's (TensorBoard keeps float32)."""
    assert sorted(got) == sorted(tb)
    for tag, points in tb.items():
        assert [x for x, _ in got[tag]] == [x for x, _ in points], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-6), tag


def wandb_records(path):
    """The records of a W&B offline run file (.wandb: a header, then LevelDB-style log blocks of protobufs)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, part = Path(path).read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block is padding
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        part, pos = part + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(part)
            part = b""
            yield record


def tracker_files(home):
    """What W&B or MLflow wrote under ``home`` (matplotlib's font cache is not theirs)."""
    return [p for p in home.rglob("*") if {"wandb", "mlflow"} & set(str(p.relative_to(home)).lower().split("/"))]


@pytest.fixture
def no_home(tmp_path, monkeypatch):
    """HOME in an empty folder: whatever a tracker writes there is seen."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_wandb_offline_holds_the_scalars_config_and_summary(quick_cfg, tmp_path, monkeypatch, no_home):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    summary = run(quick_cfg(*ARGS, "logger=wandb", f"results_dir={tmp_path / 'results'}"))
    [path] = glob.glob(f"{summary['run_dir']}/wandb/offline-run-*/run-*.wandb")
    got, config, final = {}, {}, {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            x = row["optimizer_step"] if "optimizer_step" in row else row["epoch"]
            for tag, value in row.items():
                if tag not in ("epoch", "optimizer_step") and not tag.startswith("_"):
                    got.setdefault(tag, []).append((x, value))
        elif kind in ("run", "config"):  # the config comes with the run record (and any later update)
            updates = record.run.config.update if kind == "run" else record.config.update
            config.update({i.key: json.loads(i.value_json) for i in updates})
        elif kind == "summary":
            final.update({i.key: json.loads(i.value_json) for i in record.summary.update})
    tb = tensorboard(summary["run_dir"])
    assert "per_step/mask_update/dropped" in tb and "per_epoch/test_acc" in tb and "run_end/layers/collapsed" in tb
    same(got, tb)
    assert config["method"]["name"] == "set" and config["epochs"] == 2 and config["logger"] == "wandb"
    assert final["final_test_acc"] == summary["final_test_acc"] and final["status"] == "completed"
    assert tracker_files(no_home) == []  # nothing outside results_dir


def test_mlflow_file_store_holds_the_scalars_config_and_summary(quick_cfg, tmp_path, no_home):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    results = tmp_path / "results"
    summary = run(quick_cfg(*ARGS, "logger=mlflow", f"results_dir={results}"))
    client = MlflowClient(tracking_uri=(results / "mlruns").resolve().as_uri())
    [mine] = client.search_runs([client.get_experiment_by_name("lenet300_100-mnist5k").experiment_id])
    tb = tensorboard(summary["run_dir"])
    got = {tag: [(m.step, m.value) for m in client.get_metric_history(mine.info.run_id, tag)] for tag in mine.data.metrics}
    same(got, tb)
    assert mine.data.params["method.name"] == "set" and mine.data.params["epochs"] == "2"
    assert mine.info.status == "FINISHED" and mine.data.tags["run_dir"] == summary["run_dir"]
    stored = client.download_artifacts(mine.info.run_id, "summary.json", str(tmp_path / "dl"))
    assert json.loads(Path(stored).read_text())["final_test_acc"] == summary["final_test_acc"]
    assert tracker_files(no_home) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["dl", "home", "results"]


@pytest.mark.parametrize("logger", ["wandb", "mlflow"])
def test_a_missing_extra_is_one_line_and_nothing_is_written(quick_cfg, tmp_path, monkeypatch, capsys, logger):
    """Without the extra (simulated: the module cannot be imported): exit code 2, one line naming the
    extra and how to install it, no run folder, no Hydra folder."""
    from flipout_repro.cli.train import main

    monkeypatch.setitem(sys.modules, logger, None)
    with pytest.raises(ConfigError, match=rf"logger='{logger}' needs the {logger} extra, which is not installed: pip"
                                          rf" install -e \"\.\[{logger}\]\""):
        validate(quick_cfg(*ARGS, f"logger={logger}"))
    results = tmp_path / "results"
    monkeypatch.setattr(sys, "argv", ["flipout-train", "experiment=quickstart", "device=cpu", *ARGS,
                                      f"logger={logger}", f"results_dir={results}"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err[-1] == (f"flipout-train: error: logger='{logger}' needs the {logger} extra,"
                                               f" which is not installed: pip install -e \".[{logger}]\" (or pip install"
                                               f" {logger}), or leave logger=tensorboard")
    assert not results.exists() or list(results.rglob("*")) == []


def test_a_missing_service_is_one_line(quick_cfg, tmp_path, monkeypatch):
    """W&B online with no API key; an MLflow server that does not answer."""
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    with pytest.raises(ConfigError, match="logger='wandb' has no W&B API key .*: run `wandb login`, or set"
                                          " WANDB_MODE=offline"):
        validate(quick_cfg(*ARGS, "logger=wandb"))
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ConfigError, match="logger='mlflow' cannot reach the MLflow server"):
        validate(quick_cfg(*ARGS, "logger=mlflow"))


def test_a_resumed_run_is_a_new_mlflow_run_that_holds_every_record_once(quick_cfg, tmp_path, monkeypatch, no_home):
    """Stopped in epoch 2, then resumed: the stopped attempt's MLflow run is marked FAILED, the
    resumed one replays the records kept and holds exactly TensorBoard's scalars."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from helpers import stop_after
    from flipout_repro.training.trainer import Trainer, TrainingInterrupted

    results = tmp_path / "results"
    cfg = quick_cfg(*ARGS, "logger=mlflow", f"results_dir={results}")
    original = stop_after(monkeypatch, 45)  # in epoch 2 (32 steps an epoch)
    with pytest.raises(TrainingInterrupted):
        run(cfg)
    monkeypatch.setattr(Trainer, "step", original)
    summary = run(cfg)
    client = MlflowClient(tracking_uri=(results / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("lenet300_100-mnist5k").experiment_id],
                              order_by=["attributes.start_time ASC"])
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    got = {tag: [(m.step, m.value) for m in client.get_metric_history(runs[1].info.run_id, tag)]
           for tag in runs[1].data.metrics}
    same(got, tensorboard(summary["run_dir"]))
