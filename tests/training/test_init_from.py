"""model.init_from: a run starts from a finished run's model.pt (or a state dict file) at that run's
accuracy; the weights' content (SHA-256), not their path, is in the hash; null is hash-neutral; every bad
value is refused with key, value and fix before anything is written."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import make_cfg, run_hash, write_cifar10
from flipout_repro.errors import ConfigError
from flipout_repro.config.targets import prepare
from flipout_repro.config.validate import validate
from flipout_repro.run import run
from flipout_repro.training.build import build, build_model
from flipout_repro.training.init_from import file_sha256, pin_init_from
from flipout_repro.training.evaluate import evaluate


def quick(root, *overrides):
    return make_cfg("experiment=quickstart", f"results_dir={root}", "progress=false", "device=cpu",
                    "schedule.rounding=exact", *overrides)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """A finished 2-epoch dense run (well above chance on the bundled subset)."""
    return run(quick(tmp_path_factory.mktemp("dense"), "method=dense", "epochs=2"))


def test_a_run_built_from_a_finished_run_starts_at_its_accuracy(dense, tmp_path):
    assert dense["final_test_acc"] > 80
    cfg = pin_init_from(quick(tmp_path, "method=global_magnitude", "epochs=2", "sparsity=0.5",
                              f"model.init_from={dense['run_dir']}"))
    b = build(cfg, 0.5, torch.device("cpu"))
    _, acc = evaluate(b.model, b.data, 1000)
    assert acc == pytest.approx(dense["final_test_acc"])  # the same weights, the same test set
    fresh = build(quick(tmp_path, "method=global_magnitude", "epochs=2", "sparsity=0.5"), 0.5, torch.device("cpu"))
    assert evaluate(fresh.model, fresh.data, 1000)[1] < 40  # an untrained LeNet: near chance


def test_train_prune_finetune_is_recorded_and_hashed_by_content(dense, tmp_path):
    weights = Path(dense["run_dir"]) / "model.pt"
    summary = run(quick(tmp_path, "method=global_magnitude", "schedule=one_shot", "epochs=2", "sparsity=0.9",
                        f"model.init_from={dense['run_dir']}"))
    assert summary["init_from"] == {"path": str(weights.resolve()), "sha256": file_sha256(weights)}
    assert summary["config"]["model"]["init_from_sha256"] == file_sha256(weights)
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    prune, first = records[0], [r for r in records if r["type"] == "epoch"][0]
    assert prune["type"] == "prune" and prune["epoch"] == 0  # one-shot pruning of the trained weights
    assert first["epoch"] == 1 and first["test_acc"] > 80
    plain = quick(tmp_path, "method=global_magnitude", "schedule=one_shot", "epochs=2", "sparsity=0.9")
    assert summary["hash"] != run_hash(plain)
    # the same bytes elsewhere (a copied state dict file) are the same run: the folder is found
    copy = tmp_path / "elsewhere.pt"
    shutil.copyfile(weights, copy)
    again = pin_init_from(quick(tmp_path, "method=global_magnitude", "schedule=one_shot", "epochs=2",
                                "sparsity=0.9", f"model.init_from={copy}"))
    assert run_hash(again) == summary["hash"]
    # other weights (a state dict nested under "state_dict", with DataParallel's prefix) are another run
    state = torch.load(weights, weights_only=True)
    state["fc3.bias"] = state["fc3.bias"] + 1
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "other.pt")
    other = pin_init_from(quick(tmp_path, "method=global_magnitude", "schedule=one_shot", "epochs=2",
                                "sparsity=0.9", f"model.init_from={tmp_path / 'other.pt'}"))
    assert run_hash(other) != summary["hash"]
    b = build(prepare(other)[0], 0.9, torch.device("cpu"))
    assert torch.equal(b.model.fc3.bias, state["fc3.bias"])


def test_null_is_hash_neutral():
    assert run_hash(make_cfg("model.init_from=null")) == run_hash(make_cfg())
    assert pin_init_from(make_cfg()) == make_cfg()


def refused(root, value, *overrides):
    cfg = quick(root, "method=global_magnitude", "epochs=2", "sparsity=0.5", f"model.init_from={value}", *overrides)
    with pytest.raises(ConfigError) as exc:
        run(cfg)
    assert not (root / "runs").exists()  # nothing written
    return str(exc.value)


def test_bad_values_are_refused_before_anything_is_written(dense, tmp_path):
    res = tmp_path / "res"
    msg = refused(res, tmp_path / "nope.pt")
    assert msg.startswith(f"model.init_from='{tmp_path / 'nope.pt'}' does not exist: give a finished run folder")
    (tmp_path / "empty").mkdir()
    msg = refused(res, tmp_path / "empty")
    assert "is a folder without model.pt" in msg and "point at a finished run's folder" in msg
    (tmp_path / "notes.txt").write_text("not weights")
    msg = refused(res, tmp_path / "notes.txt")
    assert "cannot be read as a state dict" in msg and "torch.save(model.state_dict(), path)" in msg
    torch.save([1, 2], tmp_path / "list.pt")
    assert "holds no state dict (a dict of tensors)" in refused(res, tmp_path / "list.pt")
    state = torch.load(Path(dense["run_dir"]) / "model.pt", weights_only=True)
    state["fc1.weight"] = state["fc1.weight"][:, :784]  # a 28x28 LeNet's first layer
    del state["fc3.bias"]
    torch.save(state, tmp_path / "mnist28.pt")
    msg = refused(res, tmp_path / "mnist28.pt")
    assert "does not fit the configured model (missing: fc3.bias; shape (file vs model): fc1.weight (300, 784) " \
           "vs (300, 1024))" in msg and "use weights of the same model= and dataset=" in msg


def test_every_model_takes_init_from(tmp_path, no_md5):  # noqa: F811
    """model.init and model.init_from are one entry for every model (conf/model_init.yaml): WRN-22-2 starts
    from a run folder's model.pt (a WRN-22-2 state dict) and trains an epoch on tiny CIFAR-10 files."""
    write_cifar10(tmp_path / "data", n=2)
    state = build_model(make_cfg("model=wrn22_2").model, 3, 10, 32).state_dict()
    state["linear.bias"] += 1.0  # not what the run's seed draws
    (tmp_path / "dense").mkdir()
    torch.save(state, tmp_path / "dense" / "model.pt")
    cfg = make_cfg("model=wrn22_2", f"model.init_from={tmp_path / 'dense'}", "method=global_magnitude",
                   "schedule=one_shot", "sparsity=0.5", "epochs=1", "batch_size=10", "dataset.download=false",
                   f"dataset.root={tmp_path / 'data'}", "device=cpu", "progress=false", f"results_dir={tmp_path / 'r'}")
    validate(cfg)
    assert (cfg.model.init, cfg.model.init_from) == ("default", str(tmp_path / "dense"))
    b = build(pin_init_from(cfg), 0.5, torch.device("cpu"))
    assert all(torch.equal(v, state[k]) for k, v in b.model.state_dict().items())
    summary = run(cfg)
    assert summary["status"] == "completed"
    assert summary["init_from"]["sha256"] == file_sha256(tmp_path / "dense" / "model.pt")


def test_weights_of_an_integer_type_are_refused_not_truncated(dense, tmp_path):
    state = torch.load(Path(dense["run_dir"]) / "model.pt", weights_only=True)
    torch.save({k: v.long() for k, v in state.items()}, tmp_path / "ints.pt")  # every weight truncated to 0
    msg = refused(tmp_path / "res", tmp_path / "ints.pt")
    assert "not floating point (file vs model): fc1.weight int64 vs float32" in msg, msg
