"""The progress bar is drawn only on a terminal; output to a file or a pipe gets one plain line per epoch
(no bar redraws filling the file)."""
import io

from helpers import run_cli
from flipout_repro.training.trainer import show_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_is_drawn_on_a_terminal_only():
    assert show_bar(True, Terminal())
    assert not show_bar(True, io.StringIO())  # a file or a pipe
    assert not show_bar(False, Terminal())  # progress=false: never
    assert not show_bar(True, object())  # a stream without isatty


def test_a_run_writing_to_a_pipe_logs_one_line_per_epoch_and_no_bar(tmp_path):
    r = run_cli("experiment=quickstart", "method=dense", "epochs=3", "device=cpu", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    text = r.stdout + r.stderr
    assert "\r" not in text and "step/s" not in text and "it/s" not in text
    epochs = [line for line in text.splitlines() if "| loss " in line and "epoch " in line]
    assert [line.split("epoch ")[1].split(" ")[0] for line in epochs] == ["1/3", "2/3", "3/3"]
