"""An option of a config group that does not exist (``method=flipuot``): one line with the closest options
and exit code 2, before Hydra composes anything, so nothing is written (no hydra/ folder either)."""
import pytest

from helpers import run_cli
from flipout_repro.cli.overrides import unknown_option


@pytest.mark.parametrize("args, line", [
    (["method=flipuot"], "method='flipuot' is not a method: did you mean flipout? (the methods:"
                         " conf/method/*.yaml, flipout-train --help lists them)"),
    (["model=vgg91"], "model='vgg91' is not a model: did you mean vgg19 or vgg16?"),
    (["dataset=cifar"], "dataset='cifar' is not a data set: did you mean cifar10 or cifar100?"),
    (["experiment=quikstart"], "experiment='quikstart' is not an experiment: did you mean quickstart or lottery_quickstart or airbench_quickstart?"),
    (["+sweep=tinyy"], "+sweep='tinyy' is not a sweep preset: did you mean tiny?"),
    (["-m", "method=flipout,snp"], "method='snp' is not a method: did you mean snip?"),
])
def test_an_unknown_option_is_one_line_and_exit_code_2(tmp_path, args, line):
    results = tmp_path / "results"
    r = run_cli(f"results_dir={results}", *args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stdout == ""
    assert r.stderr.startswith(f"flipout-train: error: {line}")
    assert not results.exists()


@pytest.mark.parametrize("args, text", [
    (["schedule=periodc"], "schedule='periodc' is not a schedule: did you mean periodic?"),
    (["budget=erc"], "budget='erc' is not a budget: did you mean erk?"),
    (["pattern=n:m"], "pattern='n:m' is not a pattern: did you mean nm?"),
    (["optim=adamm"], "optim='adamm' is not an optimiser: did you mean adamw?"),
    (["optim=rmsprop"], "optim='rmsprop' is not an optimiser: use one of adamw, sgd"),
    (["method=zzz"], "method='zzz' is not a method: pick one of conf/method/*.yaml (flipout-train --help lists"),
    (["experiment=null"], "experiment='null' is not an experiment"),  # Hydra's way to drop one is ~experiment
])
def test_every_group_names_its_options(args, text):
    assert text in str(unknown_option("flipout-train", args))


def test_existing_options_globs_ranges_and_deletions_pass():
    assert unknown_option("flipout-train", ["experiment=quickstart", "method=flipout,snip", "optim=adamw",
                                            "+sweep=tiny", "model=glob(*)", "~experiment", "sparsity=0.5",
                                            "hydra/launcher=basic", "method.noise=true"]) is None
