"""Which runs of the sweep presets (conf/sweep/*.yaml) are done, and the exact command for each that is not.

A preset's ``hydra.sweeper.params`` are expanded exactly as Hydra's basic sweeper does; each job's config is
composed (once per choice of config groups, the plain values set on top) and its run folder found with
the identity the runner uses (config/identity.py). The command for one missing run is the preset narrowed to that job
(``flipout-train +sweep=<name> method=... sparsity=... seed=...``: command-line values replace the
preset's lists), so it computes exactly what the sweep would. :func:`sweep_settings` gives each job's
identity as it runs on a CPU: what a published row that the preset reproduces is (paper_identity.py).
"""
from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flipout_repro.config import schema
from flipout_repro.config.identity import Identity, identity
from flipout_repro.config.targets import prepare
from flipout_repro.config.paths import config_dir
from flipout_repro.config.precision import pin_precision
from flipout_repro.rundir import DamagedRun, RunDir, read_summary


@dataclass
class Job:
    """One job of a sweep preset and the state of its run folder."""

    sweep: str
    overrides: list[str]
    model: str
    dataset: str
    method: str
    sparsity: float
    seed: int
    run_dir: Path
    state: str  # done | failed | damaged | interrupted | missing
    identity: Identity | None = None

    def command(self, results_dir: str | Path = "results") -> str:
        """The flipout-train command that runs (or resumes) this job alone."""
        extra = [] if str(results_dir) == "results" else [f"results_dir={results_dir}"]
        return "flipout-train " + " ".join(shlex.quote(o) for o in [f"+sweep={self.sweep}", *self.overrides, *extra])


def sweep_dir() -> Path:
    """conf/sweep."""
    return Path(config_dir()) / "sweep"


def sweep_names() -> list[str]:
    """Every sweep preset, sorted."""
    return sorted(p.stem for p in sweep_dir().glob("*.yaml"))


def check_sweep(name: str, key: str = "sweep") -> None:
    """ValueError naming ``name``, the preset it may stand for and every preset, if it is not one."""
    names = sweep_names()
    if name in names:
        return
    near = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {near[0]}? Presets: " if near else "use one of "
    raise ValueError(f"{key}={name!r} is not a sweep preset: {hint}{', '.join(names)} (conf/sweep/)")


def sweep_overrides(name: str) -> list[list[str]]:
    """The jobs of preset ``name`` as lists of ``key=value`` overrides, in Hydra's basic sweeper order."""
    check_sweep(name)
    path = sweep_dir() / f"{name}.yaml"
    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params") or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return BasicSweeper.split_arguments(parsed, None)[0]


def _is_group_override(override: str, groups: set[str]) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return key in groups or "@" in key


def sweep_jobs(name: str, results_dir: str | Path) -> list[Job]:
    """Every job of preset ``name`` with its run folder under ``results_dir`` and that folder's state."""
    jobs = []
    for overrides, cfg, target in _composed(name, results_dir, sweep_overrides(name), _this_machine()):
        ident = identity(cfg)
        run = RunDir(ident.folder(results_dir))
        jobs.append(Job(name, list(overrides), cfg.model.name, cfg.dataset.name, cfg.method.name, target,
                        int(cfg.seed), run.path, run_state(run), ident))
    return jobs


@lru_cache(maxsize=None)
def sweep_settings(name: str) -> tuple[tuple[Identity, dict[str, Any]], ...]:
    """The identity and resolved config of each job of preset ``name`` but for the seed (one per setting),
    as the job runs on a CPU: ``precision=auto`` is fp32 there, as the papers trained. What a published
    row that the preset reproduces is (reporting/paper_identity.py)."""
    settings = {}
    unseeded = [[o for o in job if o.split("=", 1)[0].lstrip("+~") != "seed"] for job in sweep_overrides(name)]
    for _, cfg, _ in _composed(name, "results", list(map(list, dict.fromkeys(map(tuple, unseeded)))),
                               torch.device("cpu")):
        ident = identity(cfg)
        settings.setdefault(ident.hash, (ident, OmegaConf.to_container(cfg, resolve=True)))
    return tuple(settings.values())


def _composed(name: str, results_dir: str | Path, jobs: list[list[str]], machine: torch.device
              ) -> Iterator[tuple[list[str], DictConfig, float]]:
    """Each job's overrides, its prepared config with the precision pinned on ``machine``, its target."""
    schema.register()  # the typed keys conf/config.yaml and conf/optim/*.yaml name (in a process that trains none)
    groups = {p.name for p in Path(config_dir()).iterdir() if p.is_dir()}
    parser = OverridesParser.create()
    composed: dict[tuple[str, ...], DictConfig] = {}
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for overrides in jobs:
            chosen = tuple(o for o in overrides if _is_group_override(o, groups))
            if chosen not in composed:
                composed[chosen] = compose(config_name="config", overrides=[f"+sweep={name}", *chosen,
                                                                            f"results_dir={results_dir}"])
            cfg = composed[chosen].copy()
            OmegaConf.set_struct(cfg, False)
            for o in overrides:
                if o not in chosen:
                    ov = parser.parse_override(o)
                    OmegaConf.update(cfg, ov.key_or_group, ov.value(), merge=False)
            cfg.device = "auto"  # never resolve ${job_device:} here: it would claim a GPU
            cfg, target = prepare(cfg)  # as run.run(): a method that never prunes records sparsity 0
            yield overrides, pin_precision(cfg, machine), target  # as run.run(): the precision used there


def _this_machine() -> torch.device:
    """The device ``device=auto`` trains on here (a sweep's job on this machine: one of its GPUs)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_state(run: RunDir) -> str:
    """done, failed (summary says so), damaged (summary.json is not a readable JSON object),
    interrupted (a checkpoint, no summary) or missing."""
    if run.summary.exists():
        try:
            return "failed" if read_summary(run).get("status") == "failed" else "done"
        except DamagedRun:
            return "damaged"
    return "interrupted" if run.checkpoint.exists() else "missing"


def coverage(results_dir: str | Path, names: list[str] | None = None) -> tuple[list[Job], dict[str, str]]:
    """The jobs of the given presets (all of them by default), and the presets that cannot be composed
    here (e.g. a method this installation lacks) with the reason. An unknown name is a ValueError."""
    jobs, problems = [], {}
    for name in sweep_names() if names is None else names:
        check_sweep(name)
        try:
            jobs += sweep_jobs(name, results_dir)
        except (HydraException, OmegaConfBaseException, ImportError) as exc:
            problems[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return jobs, problems


def shown(jobs: list[Job], requested: list[str] | None = None) -> list[Job]:
    """The jobs of the presets missing.md details: those named in ``requested``, and those the user
    started (some run of the preset is on disk, in any state); the presets nobody started are only named."""
    started = {j.sweep for j in jobs if j.state != "missing"} | set(requested or [])
    return [j for j in jobs if j.sweep in started]


def missing_markdown(jobs: list[Job], results_dir: str | Path, problems: dict[str, str] | None = None,
                     requested: list[str] | None = None) -> tuple[str, dict[tuple[str, str], str]]:
    """missing.md's text, and per (model, dataset) the section appended to that pair's table.

    Only the presets of :func:`shown` are detailed: for each, the command of the whole sweep, then every
    job that is not done with the command that runs that one job alone. The others get one line.
    """
    rd = "" if str(results_dir) == "results" else f" results_dir={shlex.quote(str(results_dir))}"
    ended = ended_runs(results_dir)
    out = ["# Missing runs", "", "The sweep presets (conf/sweep/) you started (some run of them is on disk), or"
           " named with --sweeps, against the runs on disk. Under each: the command that runs the whole sweep,"
           " then one line per job that is not done, whose command runs that one job alone. Either way"
           " finished runs are skipped and interrupted ones resume.", "", _on_disk_line(ended, jobs, results_dir, requested)]
    per_pair: dict[tuple[str, str], list[str]] = {}
    by_sweep: dict[str, list[Job]] = {}
    for job in shown(jobs, requested):
        by_sweep.setdefault(job.sweep, []).append(job)
    idle = sorted({j.sweep for j in jobs} - set(by_sweep))
    if not by_sweep:
        out += ["", "No sweep preset started yet."]
    if idle:
        out += ["", f"Not started (no run on disk), not listed: {', '.join(idle)}. `flipout-train -m +sweep=NAME`"
                " runs one whole; `make paper-runs` all the paper presets."]
    for name, sj in by_sweep.items():
        todo = [j for j in sj if j.state != "done"]
        more = _more_seeds(ended, sj)
        seeds = sorted({p.name.removeprefix("seed_") for p in more}, key=lambda n: (len(n), n))
        also = f"; {len(more)} more run{'s' if len(more) != 1 else ''} of its settings on disk (seed" \
               f"{'s' if len(seeds) != 1 else ''} {', '.join(seeds)}: not in the preset)" if more else ""
        out += ["", f"## {name}: {len(sj) - len(todo)} of its {len(sj)} jobs done{also}"]
        if todo:
            out += ["", f"The whole sweep ({len(sj)} jobs): `flipout-train -m +sweep={name}{rd}`"]
        if not todo:
            continue
        out += ["", f"One job each ({len(todo)} not done):", ""]
        for j in todo:
            line = f"- {j.state}: `{j.command(results_dir)}`"
            if j.state == "failed":
                line += f" (failed: see {j.run_dir}/summary.json; add resume=false to start it over)"
            if j.state == "damaged":
                line += f" ({j.run_dir}/summary.json is damaged: delete it, then run the command)"
            out.append(line)
            per_pair.setdefault((j.model, j.dataset), []).append(line)
    for name, why in (problems or {}).items():
        out += ["", f"## {name}: cannot be composed here ({why})"]
    sections = {pair: "\n## Missing cells\n\n" + "\n".join(lines) + "\n" for pair, lines in per_pair.items()}
    return "\n".join(out) + "\n", sections


def ended_runs(results_dir: str | Path) -> set[Path]:
    """The run folders under ``<results_dir>/runs`` whose run has ended (a summary.json: done or failed)."""
    return {p.parent for p in (Path(results_dir) / "runs").glob("**/summary.json")}


def _more_seeds(ended: set[Path], jobs: list[Job]) -> list[Path]:
    """The ended runs of the jobs' settings (the same identity but the seed) that are not jobs themselves."""
    settings, own = {j.run_dir.parent for j in jobs}, {j.run_dir for j in jobs}
    return sorted(p for p in ended - own if p.parent in settings)


def _on_disk_line(ended: set[Path], jobs: list[Job], results_dir: str | Path, requested: list[str] | None) -> str:
    """How the runs on disk relate to the presets checked: ``18 runs ended under results/runs (a
    summary.json): 12 are jobs of a sweep preset, 6 more seeds of a preset's settings, 0 belong to none of
    the presets checked.``"""
    head = f"{len(ended)} run{'s' if len(ended) != 1 else ''} ended under {Path(results_dir) / 'runs'} (a summary.json)"
    if requested == []:
        return f"{head}; no sweep preset checked (--no-sweeps)."
    in_presets = len(ended & {j.run_dir for j in jobs})
    more = len(_more_seeds(ended, jobs))
    return (f"{head}: {in_presets} are jobs of a sweep preset, {more} more seeds of a preset's settings,"
            f" {len(ended) - in_presets - more} belong to none of the presets checked.")
