"""The layout's rules that import-linter cannot see, and run folders written before the layout moved."""
import ast
import json
import shutil
import subprocess
from pathlib import Path

import flipout_repro
from helpers import make_cfg
from flipout_repro.reporting.aggregate import make_report
from flipout_repro.rundir import RunDir
from flipout_repro.run import run

PACKAGE = Path(flipout_repro.__file__).parent
FIXTURE = Path(__file__).parent / "fixtures" / "runs_v0_1_0"
OLD_QUICKSTART = ("optim.lr=0.05", "optim.milestones=[325]", "optim.milestones_of=350", "schedule.rounding=exact")


def test_no_import_of_the_package_inside_a_function_outside_cli():
    """Imports inside functions hide the import graph; only the entry points may defer them."""
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if any(n == "flipout_repro" or n.startswith("flipout_repro.") or
                       (isinstance(node, ast.ImportFrom) and node.level) for n in names):
                    hidden.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert hidden == []


def test_the_import_contract_holds():
    """pyproject.toml's [tool.importlinter] contracts: layers, reporting, independent leaves."""
    exe = shutil.which("lint-imports")
    assert exe, "lint-imports is missing: pip install -e '.[dev]'"
    r = subprocess.run([exe], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_a_run_folder_written_before_the_move_is_found_skipped_and_reported(tmp_path, caplog):
    """A finished run of version 0.1.0 (flat layout): same hash, skipped as finished, in the report."""
    shutil.copytree(FIXTURE, tmp_path / "runs")
    [old] = (tmp_path / "runs").glob("**/summary.json")
    cfg = make_cfg("experiment=quickstart", "method=global_magnitude", "schedule=one_shot", "sparsity=0.75",
                   "epochs=1", "seed=3", "progress=false", "device=cpu", f"results_dir={tmp_path}",
                   # the bundled subset's settings of version 0.1.0 (since: the FlipOut code's 32x32, 0.1307/0.3081)
                   "dataset.mean=[0.5]", "dataset.std=[0.5]", "dataset.resize=null", "dataset.image_size=28",
                   *OLD_QUICKSTART)
    assert RunDir.for_config(cfg, 0.75).summary == old
    before = old.read_bytes()
    with caplog.at_level("INFO", logger="flipout_repro"):
        summary = run(cfg)
    assert "already finished, skipped" in caplog.text
    assert old.read_bytes() == before and summary == json.loads(before)
    assert not (old.parent / "checkpoint.pt").exists()  # nothing was trained
    report = make_report(tmp_path, tmp_path / "out", sweeps=[])
    assert report["runs"] == 1 and report["cells"] >= 1


def test_run_folders_of_the_root_defaults_keep_their_hashes():
    """The run folder of every method at the root defaults, as version 0.1.0 computed it: knobs added
    since (HASH_NEUTRAL) leave the hash alone while they hold their neutral value."""
    from flipout_repro.config.validate import prepare

    expected = json.loads((Path(__file__).parent / "fixtures" / "run_paths_v0_1_0.json").read_text())
    for overrides, path in expected.items():
        cfg, target = prepare(make_cfg(*overrides.split()))
        run_dir = RunDir.for_config(cfg, target).path
        assert run_dir.relative_to(Path(cfg.results_dir) / "runs").as_posix() == path, overrides
