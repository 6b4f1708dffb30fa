"""The layout's rules that import-linter cannot see."""
import ast
import shutil
import subprocess
from pathlib import Path

import pytest

import flipout_repro

PACKAGE = Path(flipout_repro.__file__).parent


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


def test_at_most_six_modules_beside_the_packages():
    """The package's top level holds packages (config, sparsity, data, models, methods, training,
    analysis, reporting, bench, cli) and a few modules only."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 6, modules


def test_generated_outputs_are_ignored_and_the_published_numbers_are_not():
    """What the commands write under results/ stays out of git; results/reference/ is the project's."""
    repo = Path(__file__).parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["results/runs/a/seed_0/summary.json", "results/tables/runs.csv", "results/curves/a.png",
               "results/hydra/multirun/x.log", "results/bench/cpu.json", "results/mlruns/0/meta.yaml"]
    project = ["results/reference/flipout_paper.csv", "results/reference/a_new_paper.csv"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *written, *project], cwd=repo, capture_output=True,
                       text=True)
    assert r.stdout.split() == written
