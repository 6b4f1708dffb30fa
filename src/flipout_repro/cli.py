"""Console entry point ``flipout-train``: compose the Hydra config, validate it, run it.

Bad input ends with one line on stderr and exit code 2, before anything is trained or written.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from flipout_repro.launch import register_resolvers

register_resolvers()  # ${job_device:}, ${local_jobs:} (sweep and launcher presets), ${paper_batches:}


def config_dir() -> str:
    """conf/ of a source checkout (editable install), else the copy packaged inside flipout_repro."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):
        if (candidate / "config.yaml").exists():
            return str(candidate)
    raise FileNotFoundError("flipout-repro's conf/ folder is missing from this installation")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from flipout_repro.config import ConfigError
    from flipout_repro.data import DataError
    from flipout_repro.results import RunLocked
    from flipout_repro.run import run
    from flipout_repro.train import TrainingDiverged, TrainingInterrupted

    try:
        summary = run(cfg)
    except (ConfigError, DataError) as exc:
        _fail(exc, 2)
    except (RunLocked, TrainingDiverged) as exc:
        if _in_sweep():  # one bad or busy job must not stop the rest of a sweep
            logging.getLogger("flipout_repro").error("job skipped: %s", exc)
            return None
        _fail(exc, 3 if isinstance(exc, TrainingDiverged) else 4)
    except TrainingInterrupted as exc:
        _fail(exc, 143)
    return summary.get("final_test_acc")


def _fail(exc: Exception, code: int) -> None:
    logging.getLogger("flipout_repro").error("error: %s", exc)
    print(f"flipout-train: error: {exc}", file=sys.stderr)
    sys.exit(code)


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main() -> None:
    """flipout-train [overrides...]; see README.md."""
    _main()


if __name__ == "__main__":
    main()
