"""Run folders written under an earlier identity format, moved to the folder their identity gives now.

A results folder records the identity format its run folders follow in ``runs/FORMAT``. When it is
missing or older than identity.FORMAT, every run folder under ``runs/`` is read (config.yaml, else
summary.json's ``config``), its identity computed and the folder moved there; a finished run is then
skipped by the same command as before and an interrupted one resumes from its checkpoint. Group
config.yaml is written as the current format writes it (every key; a method's ``scope`` as its
``budget``; the current ``_target_`` paths), and summary.json's ``config``, ``run_dir`` and ``hash`` follow. A folder that cannot be read (no config, an unknown format, in use, or whose new
place is taken) is named with the reason and left as it is; nothing is deleted.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from omegaconf import OmegaConf

from flipout_repro.config.defaults import completed, group_defaults
from flipout_repro.config.identity import FORMAT, stored_identity
from flipout_repro.rundir import RunDir, atomic_write_text, open_append, real_folder, runs_root, write_json

log = logging.getLogger("flipout_repro")

#: ``runs/FORMAT``: the identity format of the run folders under ``runs/``
MARKER = "FORMAT"
#: ``runs/migration.txt``: every folder a migration moved, old and new path, one a line (appended)
MOVES = "migration.txt"
#: groups whose config holds a ``_target_`` that migration refreshes from conf/<group>/<name>.yaml
TARGET_GROUPS = ("model", "method", "schedule")


@dataclass
class Migration:
    """What one pass did: folders moved (old, new) and folders left as they were (folder, reason)."""

    moved: list[tuple[Path, Path]] = field(default_factory=list)
    left: list[tuple[Path, str]] = field(default_factory=list)
    root: Path | None = None

    def lines(self) -> list[str]:
        """One line for the moves (each one is in ``runs/migration.txt``), then one per folder left as it was."""
        out = []
        if self.moved:
            out.append(f"moved {len(self.moved)} run folder{'s' if len(self.moved) != 1 else ''} to the"
                       f" identity format {FORMAT} (each old and new path: {self.root / MOVES})")
        out += [f"left as it is: {path}: {why}" for path, why in self.left]
        return out


def recorded_format(results_dir: str | Path) -> int | None:
    """The identity format ``runs/FORMAT`` records (None: not recorded)."""
    try:
        return int((runs_root(results_dir) / MARKER).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def migrate(results_dir: str | Path, force: bool = False) -> Migration:
    """Move the run folders under ``<results_dir>/runs`` to their identity's folder, once per results folder
    (``force``: look again even where ``runs/FORMAT`` says it is done). Logs what moved and what did not."""
    root = runs_root(results_dir)
    result = Migration(root=root)
    if not root.is_dir() or (not force and recorded_format(results_dir) == FORMAT):
        return result
    newer = recorded_format(results_dir)
    if newer is not None and newer > FORMAT:
        raise ValueError(f"{root} holds run folders of identity format {newer}, newer than this flipout-repro's"
                         f" {FORMAT}: upgrade flipout-repro to use it")
    real_folder(root, Path(results_dir))  # runs/ itself a link: refused, nothing written through it
    with _locked(root / ".migrate.lock"):
        if not force and recorded_format(results_dir) == FORMAT:  # another process did it meanwhile
            return result
        for folder in _run_folders(root):
            why = _move(folder, Path(results_dir), result)
            if why:
                result.left.append((folder, why))
        if result.moved:
            _record(root / MOVES, result.moved)
        atomic_write_text(root / MARKER, f"{FORMAT}\n")
    for line in result.lines():
        (log.info if line.startswith("moved") else log.warning)(line)
    return result


def _run_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` that holds a run's files (seed_<n>, or config.yaml/summary.json/checkpoint.pt)."""
    found = {p for p in root.glob("**/seed_*") if p.is_dir() and not p.is_symlink()}
    for name in ("config.yaml", "summary.json", "checkpoint.pt"):
        found |= {p.parent for p in root.glob(f"**/{name}") if not p.parent.is_symlink()}
    return sorted(found)


def _move(folder: Path, results_dir: Path, result: Migration) -> str | None:
    """Move one run folder; the reason it stays where it is, or None."""
    run = RunDir(folder)
    summary = _read_json(run.summary)
    try:
        config = OmegaConf.to_container(OmegaConf.load(run.config)) if run.config.is_file() else None
    except Exception as exc:  # a config.yaml that is not YAML
        return f"config.yaml cannot be read ({type(exc).__name__})"
    if config is None and isinstance(summary, dict):
        config = summary.get("config")
    if not isinstance(config, dict):
        return "no config.yaml or summary.json with a config (a run that stopped before it started training?)"
    if not all(isinstance(config.get(g), dict) and config[g].get("name") for g in ("model", "dataset", "method")):
        return "config.yaml names no model, dataset and method: not a run folder of a known format"
    try:
        target = stored_identity(config, summary if isinstance(summary, dict) else None).folder(results_dir)
    except Exception as exc:
        return f"its identity cannot be computed ({type(exc).__name__}: {exc})"
    if target.resolve() == folder.resolve():
        return None
    if target.exists():
        return f"its folder under the identity format {FORMAT}, {target}, exists already"
    if _in_use(folder):
        return "in use by another process (its .lock is held)"
    real_folder(target.parent, runs_root(results_dir))  # no link below runs/ is followed
    os.rename(folder, target)
    result.moved.append((folder, target))
    _refresh(RunDir(target), config, summary)
    _prune_empty(folder.parent, runs_root(results_dir))
    return None


def _refresh(run: RunDir, config: dict[str, Any], summary: Any) -> None:
    """config.yaml as the current format writes it: every key (config.defaults.completed) and the
    ``_target_`` paths conf/ has now; summary.json's config, run_dir and hash."""
    config = completed(config)
    for group in TARGET_GROUPS:
        node = config.get(group)
        if isinstance(node, dict) and "_target_" in node:
            now = group_defaults(group, str(node.get("name"))).get("_target_")
            node["_target_"] = now or node["_target_"]
    if run.config.is_file():
        atomic_write_text(run.config, OmegaConf.to_yaml(OmegaConf.create(config)))
    if isinstance(summary, dict):
        summary["run_dir"] = str(run.path)
        summary["hash"] = run.path.parent.name
        if isinstance(summary.get("config"), dict):
            summary["config"] = config
        write_json(run.summary, summary)


def _record(path: Path, moved: list[tuple[Path, Path]]) -> None:
    """Append ``old -> new`` lines to ``path`` (a planted symlink is not followed)."""
    with open_append(path) as fh:
        fh.writelines(f"{old} -> {new}\n" for old, new in moved)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _in_use(folder: Path) -> bool:
    lock = folder / ".lock"
    if not lock.is_file() or lock.is_symlink():
        return False
    with open_append(lock) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove the folders the move left empty, up to ``stop``."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return
            raise
        folder = folder.parent


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (not followed when it is a symlink) while the block runs."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
