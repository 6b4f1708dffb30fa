"""Sweep presets end to end on the bundled subset: a 2-job sweep that skips finished runs and resumes an
interrupted one, the missing runs' commands, the submitit launcher's local executor, the paper presets'
grids, and the per-job GPU claim."""
import fcntl
import json
import os
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers import REPO, run_cli
from flipout_repro.config import launch
from flipout_repro.config.paths import config_dir
from flipout_repro.config.schema import SPARSITY_HINTS
from flipout_repro.config.validate import validate
from flipout_repro.reporting.sweep_status import missing_markdown, sweep_jobs, sweep_overrides
from flipout_repro.reporting.aggregate import make_report

# one thread per job: the two jobs of a parallel launcher must not fight over the cores
ENV = {"OMP_NUM_THREADS": "1"}
TWO_JOBS = ["+sweep=tiny", "method=random", "sparsity=0.75", "seed=0,1", "device=cpu"]


def summaries(root):
    return sorted(root.glob("runs/**/summary.json"))


@pytest.mark.slow
def test_two_job_sweep_skips_finished_resumes_interrupted_and_lists_the_rest(tmp_path):
    r = run_cli("-m", *TWO_JOBS, f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    paths = summaries(tmp_path)
    assert [p.parent.name for p in paths] == ["seed_0", "seed_1"]
    for p in paths:
        s = json.loads(p.read_text())
        assert (s["method"], s["target_sparsity"], s["epochs"], s["status"]) == ("random", 0.75, 8, "completed")
        assert s["device"] == "cpu" and s["config"]["progress"] is False

    # the preset's other 10 jobs are missing, each with the command that runs it alone (the same folder
    # lookup found the two runs above, so the hash the report computes is the one the runner used)
    jobs = {(j.method, j.sparsity, j.seed): j for j in sweep_jobs("tiny", tmp_path)}
    assert len(jobs) == 12 and {j.state for k, j in jobs.items() if k[0] == "random" and k[1] == 0.75} == {"done"}
    make_report(tmp_path, sweeps=["tiny"])
    text = (tmp_path / "tables" / "missing.md").read_text()
    assert "## tiny: 2 of its 12 jobs done\n" in text
    assert f"2 runs ended under {tmp_path / 'runs'} (a summary.json): 2 are jobs of a sweep preset, 0 more" in text
    assert f"The whole sweep (12 jobs): `flipout-train -m +sweep=tiny results_dir={tmp_path}`" in text
    assert "One job each (10 not done):" in text  # each line below it runs one job alone
    todo = jobs[("global_magnitude", 0.9375, 1)]
    assert todo.command(tmp_path) == ("flipout-train +sweep=tiny experiment=quickstart method=global_magnitude"
                                      f" sparsity=0.9375 seed=1 epochs=8 results_dir={tmp_path}")
    assert f"- missing: `{todo.command(tmp_path)}`" in text

    # a finished run is skipped; one with a checkpoint but no summary (interrupted) resumes and finishes
    done, interrupted = paths
    mtime = done.stat().st_mtime_ns
    interrupted.unlink()
    states = {(j.method, j.sparsity, j.seed): j.state for j in sweep_jobs("tiny", tmp_path)}
    assert states[("random", 0.75, 0)] == "done" and states[("random", 0.75, 1)] == "interrupted"
    r = run_cli("-m", *TWO_JOBS, f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stderr + r.stdout
    assert "already finished, skipped" in log and "resuming" in log and "(end of epoch 8)" in log
    assert done.stat().st_mtime_ns == mtime and interrupted.exists()
    assert len(summaries(tmp_path)) == 2


def test_missing_md_counts_the_runs_beyond_a_preset(tmp_path):
    """+sweep=tiny seed=0,1,2 ends 18 runs: the preset's 12 jobs are done, and missing.md says so and
    names the 6 runs of seed 2 (its settings, a seed it does not list) and a run of no preset."""
    jobs = sweep_jobs("tiny", tmp_path)
    ended = [j.run_dir for j in jobs] + sorted({j.run_dir.parent / "seed_2" for j in jobs})
    ended.append(tmp_path / "runs" / "lenet300_100-mnist5k" / "flipout" / "sparsity_0.5" / "0123abcd" / "seed_0")
    for folder in ended:
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"status": "completed"}))
    text, _ = missing_markdown(sweep_jobs("tiny", tmp_path), tmp_path, {}, ["tiny"])
    assert len(ended) == 19
    assert (f"19 runs ended under {tmp_path / 'runs'} (a summary.json): 12 are jobs of a sweep preset, 6 more seeds"
            " of a preset's settings, 1 belong to none of the presets checked.") in text
    assert "## tiny: 12 of its 12 jobs done; 6 more runs of its settings on disk (seed 2: not in the preset)\n" in text
    assert "One job each" not in text
    text, _ = missing_markdown([], tmp_path, {}, [])  # flipout-report --no-sweeps: nothing compared
    assert f"19 runs ended under {tmp_path / 'runs'} (a summary.json); no sweep preset checked (--no-sweeps)." in text


@pytest.mark.slow
def test_submitit_local_launcher_runs_two_jobs(tmp_path):
    r = subprocess_cli("-m", *TWO_JOBS, "epochs=4", "hydra/launcher=submitit_local",
                       "hydra.launcher.timeout_min=10", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.parent.name for p in summaries(tmp_path)] == ["seed_0", "seed_1"]
    logs = list(tmp_path.glob("hydra/multirun/*/*/.submitit/*/*_log.out"))
    assert len(logs) == 2  # each job ran in its own process, through submitit
    assert all("Job completed successfully" in p.read_text() for p in logs)


def subprocess_cli(*args):
    import subprocess

    env = dict(os.environ, PYTHONUNBUFFERED="1", **ENV)
    return subprocess.run([sys.executable, "-m", "flipout_repro.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize("model", ["vgg19", "resnet18", "densenet121"])
def test_paper_presets_expand_to_the_papers_grid_and_validate(model):
    main = sweep_overrides(f"paper_{model}")
    assert len(main) == 5 * 5 * 3
    values = lambda jobs, key: {o.split("=", 1)[1] for j in jobs for o in j if o.startswith(key + "=")}  # noqa
    assert {float(v) for v in values(main, "sparsity")} == set(SPARSITY_HINTS)
    assert values(main, "seed") == {"42", "43", "44"}
    assert values(main, "method") == {"flipout", "global_magnitude", "random", "flipout_no_noise",
                                      "noisy_global_magnitude"}
    assert len(sweep_overrides(f"paper_{model}_snip")) == 15 and len(sweep_overrides(f"paper_{model}_dense")) == 3
    hoyer = sweep_overrides(f"paper_{model}_hoyer")
    assert len(hoyer) == {"vgg19": 13, "resnet18": 1, "densenet121": 1}[model]
    # one job per method composes and passes validation (knob names, schedule fit, image size)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for name, jobs in ((f"paper_{model}", main), (f"paper_{model}_snip", None),
                           (f"paper_{model}_dense", None), (f"paper_{model}_hoyer", hoyer)):
            firsts = {}
            for job in jobs or sweep_overrides(name):
                firsts.setdefault(next(o for o in job if o.startswith("method=")), job)
            for job in firsts.values():
                cfg = compose(config_name="config", overrides=[f"+sweep={name}", *job])
                validate(cfg)
                assert cfg.epochs == (500 if name.endswith("hoyer") else 350) and cfg.device == "auto"
                assert cfg.batch_size == 128 and cfg.optim.lr == 0.1 and list(cfg.optim.milestones) == [150, 250]
                # the original's protocol: fp32, its counts at every prune event
                assert cfg.precision == "fp32" and cfg.schedule.rounding == "reference", (name, job)
                # each method keeps its own schedule: SNIP prunes once before training, Hoyer-Square's
                # sparsity comes from its threshold alone, the others follow the paper's periodic one
                expected = {"snip": "one_shot", "hoyer_square": "none", "dense": "periodic"}
                assert cfg.schedule.name == expected.get(cfg.method.name, "periodic"), (name, job)


@pytest.mark.parametrize("experiment", ["vgg19_cifar10", "resnet18_cifar10", "densenet121_imagenette", "quickstart"])
def test_experiment_presets_leave_each_method_its_own_schedule(experiment):
    methods = sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml"))
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for method in methods:
            alone = compose(config_name="config", overrides=[f"method={method}"]).schedule
            preset = compose(config_name="config", overrides=[f"experiment={experiment}", f"method={method}"]).schedule
            # the presets count as the reference code does (schedule.rounding), on whichever schedule
            assert preset.rounding == "reference" and alone.rounding == "exact", (experiment, method)
            assert {**preset, "rounding": "exact"} == alone, (experiment, method)


def test_densenet_preset_is_the_papers_imagenette_setting():
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=densenet121_imagenette"])
    ds = OmegaConf.to_container(cfg.dataset)
    assert ds["name"] == "imagenette" and ds["image_size"] == 224 and ds["crop_padding"] == 28 and ds["flip"]
    assert ds["mean"] == [0.4625, 0.4580, 0.4295] and ds["std"] == [0.3901, 0.3880, 0.4042]
    assert cfg.model.name == "densenet121" and cfg.model.stem == "imagenet"


def test_each_worker_process_claims_its_own_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "_claim", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    other = open(tmp_path / "gpu0.lock", "a+")  # another worker holds GPU 0
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert launch.claim_gpu(3, tmp_path) == 1
    assert launch.claim_gpu(3, tmp_path) == 1  # kept for the life of the process
    assert (tmp_path / "gpu1.lock").read_text().startswith(f"pid {os.getpid()}")
    launch._claim[1].close()  # the worker process ends: its lock goes with it
    monkeypatch.setattr(launch, "_claim", None)
    assert launch.claim_gpu(1, tmp_path) is None  # every GPU is held
    monkeypatch.setattr(launch, "_claim", None)
    monkeypatch.setattr(launch, "gpu_count", lambda: 1)
    assert launch.job_device() == "auto" and launch.local_jobs() == 1
    monkeypatch.setattr(launch, "gpu_count", lambda: 0)
    assert launch.job_device() == "auto" and launch.local_jobs() == 2
    monkeypatch.setattr(launch, "gpu_count", lambda: 4)
    monkeypatch.setattr(launch, "lock_dir", lambda: tmp_path)
    assert launch.job_device() == "cuda:1"
    other.close()
