"""An unknown key names the key meant: what other tools call it (schema.SYNONYMS: learning_rate, lr, wd,
bs, momentum, epoch, ...), else the keys with the same last part, else close matches of the real keys;
every synonym points to a key or group that exists."""
import pytest

from flipout_repro.config import schema
from flipout_repro.config.validate import suggest_keys, unknown_key_error
from flipout_repro.cli.overrides import config_groups


@pytest.mark.parametrize("typed, meant", [
    ("learning_rate", "optim.lr"), ("lr", "optim.lr"), ("LR", "optim.lr"), ("optim.learning_rate", "optim.lr"),
    ("wd", "optim.weight_decay"), ("weight_decay", "optim.weight_decay"), ("weight-decay", "optim.weight_decay"),
    ("bs", "batch_size"), ("batch", "batch_size"), ("momentum", "optim.momentum"), ("epoch", "epochs"),
    ("num_epochs", "epochs"), ("max_epochs", "epochs"), ("optimizer", "optim"), ("num_workers", "dataset.workers"),
    ("data_dir", "dataset.root"), ("output_dir", "results_dir"), ("arch", "model"), ("amp", "precision"),
    ("learnin_rate", "optim.lr"),  # a typo of a synonym
    ("seeed", "seed"), ("sparsty", "sparsity"), ("optim.lrr", "optim.lr"),  # close matches of real keys
])
def test_the_key_meant_is_named(typed, meant):
    assert suggest_keys(typed)[0] == meant
    assert str(unknown_key_error(typed, 1)).startswith(f"{typed}=1 is not a config key: did you mean {meant}")


def test_nothing_close_says_remove_it():
    assert suggest_keys("zzz") == []
    assert str(unknown_key_error("zzz", 1)) == "zzz=1 is not a config key: remove it (flipout-train --cfg job lists the keys)"


def test_every_synonym_points_to_a_real_key_or_group_and_is_not_one():
    real = set(schema.key_paths()) | set(config_groups())
    assert set(schema.SYNONYMS.values()) <= real
    leaves = {k.split(".")[-1] for k in schema.key_paths()}
    # a synonym that is itself a key's last part must point to that key (weight_decay -> optim.weight_decay)
    for name, key in schema.SYNONYMS.items():
        assert name == name.lower() and "-" not in name
        if name in leaves:
            assert key.split(".")[-1] == name, name
