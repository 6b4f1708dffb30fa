"""Where the installation keeps its own files: the Hydra config tree and the published reference numbers.

A source checkout (editable install) uses ``conf/`` and ``results/reference/`` at the top of the
repository; a wheel carries copies inside the package. This module imports nothing of the package, so
every layer may ask it.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # src/flipout_repro (or the installed package)


def _first(candidates: tuple[Path, ...], marker: str, what: str) -> Path:
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    raise FileNotFoundError(f"flipout-repro's {what} folder is missing from this installation: reinstall it "
                            "(pip install -e . in a source checkout)")


def config_dir() -> str:
    """conf/ of a source checkout, else the copy packaged inside flipout_repro."""
    return str(_first((_PACKAGE.parents[1] / "conf", _PACKAGE / "conf"), "config.yaml", "conf/"))


def reference_dir() -> Path:
    """The published numbers: results/reference of a source checkout, else the copy inside the package."""
    return _first((_PACKAGE.parents[1] / "results" / "reference", _PACKAGE / "reference"), ".", "results/reference")
