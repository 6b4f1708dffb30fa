"""Console entry point ``flipout-train``: compose the Hydra config, run it, map failures to exit codes.

Bad input ends with one line on stderr and exit code 2, before anything is trained or written (see
cli/failures.py for every exit code). In a sweep (``-m``) a diverged or locked job is logged and the
sweep goes on.
"""
from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from flipout_repro import launch, paths, schema
from flipout_repro.cli.failures import DIVERGED, LOCKED, exit_code, fail, message

schema.register()  # run_schema, the first entry of conf/config.yaml's defaults list
launch.register_resolvers()  # ${job_device:}, ${local_jobs:} (sweep and launcher presets), ${paper_batches:}


@hydra.main(version_base="1.3", config_path=paths.config_dir(), config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from flipout_repro.run import run  # here, not at the top: --help and bad overrides stay fast

    try:
        summary = run(cfg)
    except Exception as exc:
        code = exit_code(exc)
        if code in (DIVERGED, LOCKED) and _in_sweep():  # one bad or busy job must not stop the sweep
            logging.getLogger("flipout_repro").error("job skipped: %s", exc)
            return None
        if code == 1:
            raise  # a bug: Hydra prints the traceback
        logging.getLogger("flipout_repro").error("error: %s", exc)
        fail("flipout-train", message(exc), code)
    return summary.get("final_test_acc")


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main() -> None:
    """flipout-train [overrides...]; see README.md."""
    _main()


if __name__ == "__main__":
    main()
