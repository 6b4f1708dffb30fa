"""A run's folder: the files a run writes, its lock, atomic writes.

    <results_dir>/runs/<model>-<dataset>/<method>/sparsity_<s>/<hash8>/seed_<n>/
        config.yaml  metrics.jsonl  tb/  checkpoint.pt  model.pt  masks.pt  curve.csv  curve.png  summary.json

Which folder a config gets is its identity's (config/identity.py). summary.json is written last and
atomically: a run folder with a summary is finished, and a sweep skips it. Its contract is :class:`Summary`.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pickle
import re
import secrets
import subprocess
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Iterator

import torch

#: The version of summary.json's contract (:class:`Summary`), written as ``"format"``; a summary without
#: one is format 0 (written before the contract), with the same keys or fewer.
SUMMARY_FORMAT = 1

def format_sparsity(s: float) -> str:
    """0.99609375 -> '0.99609375', 0.996 -> '0.996', 0 -> '0'."""
    return format(float(s), ".10g")


def runs_root(results_dir: str | Path) -> Path:
    """<results_dir>/runs."""
    return Path(results_dir) / "runs"


def tables_dir(results_dir: str | Path) -> Path:
    """<results_dir>/tables: the aggregated tables (Markdown + CSV) that flipout-report writes."""
    return Path(results_dir) / "tables"


def curves_dir(results_dir: str | Path) -> Path:
    """<results_dir>/curves: the accuracy-vs-sparsity figures (PNG + CSV) that flipout-report writes."""
    return Path(results_dir) / "curves"


class RunDir:
    """The paths of one run's folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"
        self.model = self.path / "model.pt"
        self.masks = self.path / "masks.pt"
        self.tb = self.path / "tb"
        self.curve_csv = self.path / "curve.csv"
        self.curve_png = self.path / "curve.png"
        self.states = self.path / "states"  # states kept for derived runs: epoch_<e>.pt
        self.parent = self.path / "parent.json"  # a derived run: what it took from its parent, at its start

    def state_file(self, epoch: int) -> Path:
        """The kept state (a checkpoint snapshot) at the end of ``epoch`` (0: before the first step)."""
        return self.states / f"epoch_{int(epoch)}.pt"

    def finished(self) -> bool:
        """True once summary.json exists."""
        return self.summary.exists()


class DamagedRun(ValueError):
    """A file of a run folder that cannot be used as it is; the message names it and the way out."""


def read_summary(run: RunDir) -> dict[str, Any]:
    """The run's summary.json as a dict; DamagedRun when it is not a readable JSON object."""
    way_out = ("delete it and run the same command again (the run resumes from its checkpoint.pt, or"
               " starts over without one)")
    try:
        summary = json.loads(run.summary.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedRun(f"{run.summary} cannot be read ({exc}): {way_out}") from exc
    if not isinstance(summary, dict):
        raise DamagedRun(f"{run.summary} is not a JSON object: {way_out}")
    return summary


@dataclass
class Summary:
    """summary.json: what run.py writes at a run's end and the report reads.

    The fields without a default are always there (the report cannot place a run without them); the
    others are written by every run of this format and may be absent from a summary of format 0. The
    optional ones (``OPTIONAL``) are written only when they apply. Everything else a summary holds (the
    method's own numbers, the per-layer accounting of the run's end, int8 results, flipout-bench's
    speed-ups, a failure's ``error``) is in ``extra``, at the top level of the JSON object.
    """

    model: str  # model.name
    dataset: str  # dataset.name
    method: str  # method.name
    seed: int  # the run's seed
    target_sparsity: float  # the sparsity key (0 for a method that never prunes)
    config: dict[str, Any]  # the resolved config: the run's identity (config/identity.stored_identity)
    epochs: int | None = None  # epochs trained
    hash: str | None = None  # the run folder's <hash8>: its identity without the seed
    achieved_sparsity: float | None = None  # pruned share of the prunable weights at the end
    sparsity_is_outcome: bool = False  # true where the method sets the sparsity itself (STR, a threshold)
    prunable: int | None = None  # Conv2d and Linear weights
    nonzero: int | None = None  # of those, kept at the end
    params_total: int | None = None  # every parameter (biases and BatchNorm too)
    params_nonzero: int | None = None  # of those, not pruned
    status: str = "completed"  # or failed (diverged, or stopped at a layer collapse: ``error`` says why)
    final_test_acc: float | None = None  # % after the last epoch: what every table compares
    best_test_acc: float | None = None  # % of the best epoch (shown apart, never averaged)
    final_train_acc: float | None = None  # % on the training batches of the last epoch
    final_test_loss: float | None = None  # cross-entropy on the test set after the last epoch
    final_val_acc: float | None = None  # optional: dataset.train_fraction < 1
    best_val_acc: float | None = None  # optional: dataset.train_fraction < 1
    wall_time_s: float | None = None  # seconds the run took
    device: str | None = None  # what it trained on (cpu, cuda:0)
    precision: str | None = None  # bf16 | fp32: what the run computed in
    versions: dict[str, Any] | None = None  # python, torch, torchvision, flipout-repro
    git_sha: str | None = None  # the checkout's commit, when it is one
    run_dir: str | None = None  # the run folder
    init_from: dict[str, Any] | None = None  # optional: model.init_from's path and sha256
    pattern: dict[str, Any] | None = None  # optional: an N:M pattern's checks
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = SUMMARY_FORMAT  # this contract's version

    OPTIONAL = ("final_val_acc", "best_val_acc", "init_from", "pattern")

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``format`` first, the fields (optional ones only when set), then ``extra``."""
        d = {k: v for k, v in asdict(self).items() if k != "extra" and not (k in self.OPTIONAL and v is None)}
        return {"format": d.pop("format"), **d, **self.extra}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Summary":
        """A summary.json's object (of this format or an earlier one); ValueError naming what is wrong."""
        version = d.get("format", 0)
        if not isinstance(version, int) or version > SUMMARY_FORMAT:
            raise ValueError(f"format={version!r} is not a summary format this version reads (0 to {SUMMARY_FORMAT}):"
                             " update flipout-repro to read it")
        names = {f.name for f in fields(cls)} - {"extra"}
        lacking = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
                   and f.name not in d]
        if lacking:
            raise ValueError(f"lacks {', '.join(lacking)} (a run's summary.json always has them): delete it and"
                             " run the same command again")
        wrong = _wrong_fields(d)
        if wrong:
            raise ValueError(f"has {'; '.join(wrong)}: not a summary a run writes (edited or damaged); delete"
                             " it and run the same command again")
        return cls(**{k: v for k, v in d.items() if k in names} | {"format": version},
                   extra={k: v for k, v in d.items() if k not in names})


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite_in(v: Any, low: float, high: float) -> bool:
    return _number(v) and math.isfinite(v) and low <= v <= high


#: summary.json's accuracies, in percent; a failed run may hold NaN in them (it diverged), a completed one not
_ACCURACIES = ("final_test_acc", "best_test_acc", "final_train_acc", "final_val_acc", "best_val_acc")
_COUNTS = ("prunable", "nonzero", "params_total", "params_nonzero", "epochs")


def _wrong_fields(d: dict[str, Any]) -> list[str]:
    """The fields of a summary's object that break :class:`Summary`'s typed definition, as ``key=value
    (what it must be)``; [] when every field is right."""
    wrong: list[str] = []

    def bad(key: str, rule: str) -> None:
        wrong.append(f"{key}={d.get(key)!r} ({rule})")

    for key in ("model", "dataset", "method"):
        if not isinstance(d.get(key), str) or not NAME.fullmatch(d[key]):
            bad(key, "a name: letters, digits and _.+-")
    if not isinstance(d.get("config"), dict):
        bad("config", "the run's config, an object")
    else:
        for key in ("model", "dataset", "method"):
            part = d["config"].get(key)
            name = part.get("name") if isinstance(part, dict) else None
            if name is not None and (not isinstance(name, str) or not NAME.fullmatch(name)):
                wrong.append(f"config.{key}.name={name!r} (a name: letters, digits and _.+-)")
    if not isinstance(d.get("seed"), int) or isinstance(d.get("seed"), bool):
        bad("seed", "an integer")
    if not _finite_in(d.get("target_sparsity"), 0.0, 1.0):
        bad("target_sparsity", "a number from 0 to 1")
    for key in ("achieved_sparsity", "effective_sparsity"):
        if d.get(key) is not None and not _finite_in(d[key], 0.0, 1.0):
            bad(key, "a number from 0 to 1")
    status = d.get("status", "completed")
    if status not in ("completed", "failed"):
        bad("status", "completed or failed")
    for key in _ACCURACIES:
        v = d.get(key)
        if v is None and not (key == "final_test_acc" and status == "completed" and "status" in d):
            continue
        if status == "failed" and _number(v) and math.isnan(v):
            continue
        if not _finite_in(v, 0.0, 100.0):
            bad(key, "a percentage from 0 to 100" if v is not None else "a completed run's accuracy, a number")
    for key in _COUNTS:
        v = d.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            bad(key, "a count, an integer >= 0")
    if d.get("wall_time_s") is not None and not _finite_in(d["wall_time_s"], 0.0, math.inf):
        bad("wall_time_s", "seconds, a number >= 0")
    if not isinstance(d.get("sparsity_is_outcome", False), bool):
        bad("sparsity_is_outcome", "true or false")
    for key in ("quantization", "inference", "parent", "imp"):
        if d.get(key) is not None and not isinstance(d[key], dict):
            bad(key, "an object")
    for key in ("train_macs_fraction", "train_macs_fraction_own"):
        if d.get(key) is not None and not _finite_in(d[key], 0.0, math.inf):
            bad(key, "a fraction of one dense training run, a number >= 0")
    if d.get("control") is not None and not isinstance(d["control"], str):
        bad("control", "the control's kind, a string")
    wrong += _derived_fields(d)
    return wrong


def _derived_fields(d: dict[str, Any]) -> list[str]:
    """What breaks the typed definition in a derived run's ``parent`` and ``imp`` (run.py writes them)."""
    wrong = []
    parent = d.get("parent") if isinstance(d.get("parent"), dict) else {}
    for key in ("run_dir", "hash", "method", "setting_label", "setting", "took"):
        if parent.get(key) is not None and not isinstance(parent[key], str):
            wrong.append(f"parent.{key}={parent[key]!r} (a string)")
    if parent.get("seed") is not None and (not isinstance(parent["seed"], int) or isinstance(parent["seed"], bool)):
        wrong.append(f"parent.seed={parent['seed']!r} (an integer)")
    for key in ("target_sparsity", "achieved_sparsity"):
        if parent.get(key) is not None and not _finite_in(parent[key], 0.0, 1.0):
            wrong.append(f"parent.{key}={parent[key]!r} (a number from 0 to 1)")
    if parent.get("final_test_acc") is not None and not _finite_in(parent["final_test_acc"], 0.0, 100.0):
        wrong.append(f"parent.final_test_acc={parent['final_test_acc']!r} (a percentage from 0 to 100)")
    level = (d.get("imp") if isinstance(d.get("imp"), dict) else {}).get("level")
    if level is not None and (not isinstance(level, int) or isinstance(level, bool) or level < 0):
        wrong.append(f"imp.level={level!r} (an IMP level, an integer >= 0)")
    return wrong


def load_summary(run: RunDir) -> Summary:
    """The run's summary.json as a :class:`Summary`; DamagedRun when it cannot be read as one."""
    summary = read_summary(run)
    try:
        return Summary.from_json(summary)
    except ValueError as exc:
        raise DamagedRun(f"{run.summary} {exc}") from exc


@contextlib.contextmanager
def atomic_open(path: Path, mode: str) -> Iterator[IO]:
    """A fresh temporary file beside ``path`` (a random name, created with O_EXCL and O_NOFOLLOW, so a
    file or symlink planted in the folder is never written through), renamed over ``path`` once written
    and synced; a folder that is a symbolic link is refused. On any failure the temporary file is removed;
    a full disk is said plainly (torch.save's own full-disk error is not an OSError: it is named too)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    if path.parent.is_symlink():  # the file itself is renamed over (a link there is replaced, not followed)
        raise _link_error(path.parent)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as to any file the run writes
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        full = _disk_full(exc, path.parent)  # asked before the partial file is removed (and space freed)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if full:
            raise OSError(errno.ENOSPC, f"no space left on device while writing {path} (the partial file was"
                          " removed): free some space and run the same command again") from exc
        raise


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """A full disk: ENOSPC, or torch.save's zip writer failing (a RuntimeError, ``enforce fail at
    inline_container.cc``) where the folder's file system has less than a megabyte left."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    if not isinstance(exc, RuntimeError) or "inline_container" not in str(exc):
        return False
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 2**20


#: the temporary files :func:`atomic_open` writes (``.<name>.<12 hex>.tmp``)
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files a killed process left in ``folder`` (SIGKILL during a write: nothing
    removes them then); call it holding the folder's lock. Returns what was removed."""
    gone = [p for p in Path(folder).iterdir() if _TEMPORARY.fullmatch(p.name) and not p.is_dir()]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a fresh temporary file beside ``path``, then rename it over ``path``."""
    with atomic_open(Path(path), "w") as fh:
        fh.write(text)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a fresh temporary file, then rename (a crash never leaves half a checkpoint)."""
    with atomic_open(Path(path), "wb") as fh:
        torch.save(obj, fh)


def load_tensors(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: only tensors and plain containers, never code.

    A file that cannot be read raises ValueError with what is wrong, in our words: torch's own message
    for a refused file advises loading it with ``weights_only=False``, which would run whatever it holds.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # what weights_only=True raises for anything but plain data
        raise ValueError("holds objects other than tensors and plain containers (refused: loading them could"
                         " run code)") from exc
    except Exception as exc:  # truncated file, not a zip/pickle
        text = " ".join(str(exc).split())
        text = text if "weights_only" not in text else "not a file torch.load can read"
        raise ValueError(f"cannot be read ({type(exc).__name__}: {text[:300]})") from exc


#: a name a tool may use as one component of a path it writes (a model, data set or method name read
#: from a config or a summary): letters, digits and ``_.+-``, not starting with a dot
NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,99}")


def path_name(value: Any, what: str) -> str:
    """``value`` as one file-name component; DamagedRun naming ``what`` when it could name another folder
    (``..``, a slash, an empty or hidden name): values read back from run folders are untrusted."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise DamagedRun(f"{what}={value!r} is not a name a file can be written under (letters, digits and"
                         " _.+- only): correct it or remove the run folder that holds it")
    return value


def _link_error(path: Path) -> DamagedRun:
    return DamagedRun(f"{path} is a symbolic link: nothing is written through one (remove it, then run the same"
                      " command again)")


def real_folder(path: Path, root: Path) -> Path:
    """Create the folder ``path`` and its parents below ``root`` (``root`` itself may be a link the user
    chose), refusing any of them that is a symbolic link or not a folder: nothing a tool writes under
    ``root`` lands outside it through a link planted there."""
    path, root = Path(path), Path(root)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise DamagedRun(f"{path} is not inside {root}: nothing is written outside it") from None
    if ".." in parts:
        raise DamagedRun(f"{path} leaves {root} (a '..' in it): nothing is written outside it")
    root.mkdir(parents=True, exist_ok=True)
    here = root
    for part in parts:
        here = here / part
        try:
            os.mkdir(here)
        except FileExistsError:
            pass
        if here.is_symlink():
            raise _link_error(here)
        if not here.is_dir():
            raise DamagedRun(f"{here} is a file where a folder is expected: move it away, then run the same"
                             " command again")
    return path


def open_append(path: Path, encoding: str | None = "utf-8") -> IO:
    """``open(path, "a")`` that refuses a symbolic link at ``path`` instead of appending through it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_error(Path(path)) from None
        raise
    return os.fdopen(fd, "a", encoding=encoding)


def update_summary(run: RunDir, entries: dict[str, Any], wait: float = 60.0) -> dict[str, Any]:
    """Merge ``entries`` into the run's summary.json under the run's lock (waiting up to ``wait`` seconds
    for another writer): the summary is read again inside the lock, so two tools that add their results
    at the same time (flipout-quantize, flipout-bench --inference) both keep them. Returns the summary."""
    with RunLock(run, wait=wait):
        summary = read_summary(run)
        summary.update(entries)
        write_json(run.summary, summary)
    return summary


def write_json(path: Path, obj: Any) -> None:
    """Atomic, indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=jsonable) + "\n")


def jsonable(o: Any) -> Any:
    """json.dumps's ``default``: tensors as lists, paths as strings."""
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def git_sha() -> str | None:
    """The commit of the source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class RunLocked(RuntimeError):
    """Another process holds the run folder."""


class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock`` while a process works on the run.

    The operating system drops the lock when the process dies (even by SIGKILL), so a crashed run never
    leaves a stale lock behind.
    """

    def __init__(self, run: RunDir, wait: float = 0.0) -> None:
        self.path = run.path / ".lock"
        self.wait = wait  # seconds to wait for another holder (a short write) before RunLocked
        self._fh = None

    def __enter__(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_NOFOLLOW: a symlink planted at .lock is not followed (and its target not truncated)
            fh = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666), "r+")
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise OSError(errno.ELOOP, f"{self.path} is a symbolic link, not the run's lock file: remove it"
                          " and run the same command again") from exc
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunLocked(f"run folder {self.path.parent} is in use by {holder}: wait for it to finish,"
                            " or run with another seed or results_dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self._fh is not None:
            # A finished run keeps no .lock. Removed while still held: a process that opened
            # the old file meanwhile gets its lock after this, finds summary.json and skips the run.
            if (self.path.parent / "summary.json").exists():
                self.path.unlink(missing_ok=True)
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
