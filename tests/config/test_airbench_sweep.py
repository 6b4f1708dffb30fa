"""+sweep=airbench_methods and +sweep=airbench_dense: every job composes and passes the checks a run makes
before it writes anything; a method that cannot reach a level in the protocol's 10 epochs is refused in one
line (compose only: no training)."""
import pytest

from helpers import make_cfg
from flipout_repro.config.validate import validate
from flipout_repro.errors import ConfigError
from flipout_repro.reporting.sweep_status import sweep_overrides


def test_every_method_job_validates(tmp_path):
    jobs = sweep_overrides("airbench_methods")
    assert len(jobs) == 13 * 4 * 20
    first_seed = [j for j in jobs if j[-1] == "seed=0"]
    assert len(first_seed) == 13 * 4
    for job in first_seed:
        cfg = make_cfg(*job, f"results_dir={tmp_path}")
        validate(cfg)
        assert (cfg.model.name, cfg.epochs, cfg.batch_size, cfg.budget.name) == ("airbench94", 10, 1024, "global")
    assert len(sweep_overrides("airbench_dense")) == 20


def test_a_level_the_protocol_cannot_reach_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("experiment=airbench94", "method=flipout", "sparsity=0.9990234375",
                          f"results_dir={tmp_path}"))
    msg = str(err.value)
    assert msg.startswith("epochs=10 is too short") and "epochs>=11" in msg and "\n" not in msg


@pytest.mark.parametrize("override, start", [
    ("loss.reduction=avg", "loss.reduction='avg' is not a valid choice: use one of mean, sum"),
    ("tta=3", "tta=3 is not a valid choice"),
    ("dataset.crop_fill=edge", "dataset.crop_fill='edge' is not a valid choice"),
    ("optim.lookahead_every=-1", "optim.lookahead_every=-1 must be"),
    ("optim.norm_lr_scale=0", "optim.norm_lr_scale=0"),
    ("optim.norm_weight_decay=-0.1", "optim.norm_weight_decay=-0.1"),
    ("optim.warmup_epochs=2", "optim.warmup_epochs=2 does not apply to optim.schedule=triangle"),
])
def test_the_protocols_keys_refuse_bad_values_in_one_line(override, start, tmp_path):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("experiment=airbench94", override, f"results_dir={tmp_path}"))
    assert str(err.value).startswith(start) and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())
