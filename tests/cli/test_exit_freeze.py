"""cli/train.py: flipout-train freezes the collector's objects at exit (issue 18); nothing is lost for it."""
from __future__ import annotations

import subprocess
import sys


def test_the_freeze_runs_at_exit_once_and_the_log_is_still_flushed(tmp_path):
    log_file = tmp_path / "run.log"
    code = (
        "import atexit, gc, logging, sys\n"
        f"logging.basicConfig(filename={str(log_file)!r}, level=logging.INFO)\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0, flush=True))\n"
        "from flipout_repro.cli.train import _freeze_at_exit\n"
        "n = atexit._ncallbacks(); gc.unfreeze(); _freeze_at_exit(); _freeze_at_exit()\n"
        "print('registered:', atexit._ncallbacks() - n, flush=True)\n"
        "print('frozen before exit:', gc.get_freeze_count() > 0, flush=True)\n"
        "class Cycle:\n"
        "    def __init__(self): self.me = self\n"
        "keep = Cycle()\n"
        "logging.getLogger('flipout_repro').info('the last line')\n"
        "sys.exit(3)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr[-2000:]  # the exit code is untouched
    assert r.stdout.split("\n")[:3] == ["registered: 1", "frozen before exit: False", "frozen at exit: True"]
    assert log_file.read_text().strip().endswith("the last line")  # logging's own atexit flush ran after it
