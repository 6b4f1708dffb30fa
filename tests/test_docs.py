"""The manual is tested: README.md and every page of docs/ build into a strict MkDocs site, the generated
reference pages are what the code gives, and every ``bash``, ``console`` and ``python`` block runs.

Each page's blocks run in order in a fresh folder (a later block may use what an earlier one wrote), with
the console scripts of pyproject.toml running this checkout's code. A line right above a block may say:

- ``<!-- docs-test: skip: REASON -->``: the block is not run (a GPU, a cluster, a download, hours of
  training); the reason is required;
- ``<!-- docs-test: append: KEY=VALUE ... -->``: the overrides are appended to each ``flipout-train``
  command of the block (a long command run shorter on the bundled subset).

A ``console`` block is ``$ command`` lines, each followed by the output it must print (``...`` stands for
any text); the command may fail (bad-input examples), the output must match.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUN = {"bash": "shell", "sh": "shell", "shell": "shell", "console": "console", "python": "python"}
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(\w+):\s*(.*?)\s*-->")
#: commands that take long enough to mark a page's test slow
LONG = re.compile(r"^\s*(flipout-(train|report|export|quantize|bench|data|controls)\b(?!.*--(cfg|help|version)))", re.M)


@dataclass
class Block:
    """One fenced block of a page, with its directive."""

    page: Path
    line: int
    lang: str
    code: str
    skip: str | None = None
    append: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` (fences at the start of a line), each with the directive right above it."""
    out, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        m = re.match(r"```\s*([\w-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        block = Block(page, start + 1, m.group(1).lower(), "\n".join(body) + "\n")
        above = DIRECTIVE.fullmatch(lines[start - 1].strip()) if start else None
        if above:
            kind, value = above.groups()
            if kind not in ("skip", "append"):
                raise ValueError(f"{block.where}: unknown docs-test directive {kind!r}: use skip or append")
            setattr(block, kind, value)
        out.append(block)
        i += 1
    return out


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in RUN and b.skip is None]


def test_every_command_block_runs_or_says_why_not():
    """A skipped block names its reason; a directive sits only above a block that can run; few are skipped."""
    problems, skipped, total = [], 0, 0
    for page in PAGES:
        lines = page.read_text().splitlines()
        problems += [f"{page.relative_to(REPO)}:{n + 1}: a docs-test directive not right above a fence"
                     for n, line in enumerate(lines) if DIRECTIVE.fullmatch(line.strip())
                     and not (n + 1 < len(lines) and lines[n + 1].startswith("```"))]
        for b in blocks(page):
            if b.skip is not None or b.append is not None:
                if b.lang not in RUN:
                    problems.append(f"{b.where}: a docs-test directive above a {b.lang or 'plain'} block")
                if b.skip is not None and len(b.skip) < 10:
                    problems.append(f"{b.where}: skipped without a reason: {b.skip!r}")
            if b.lang in RUN:
                total += 1
                skipped += b.skip is not None
    assert not problems, "\n".join(problems)
    assert total and skipped <= total // 2, f"{skipped} of {total} command blocks are not run"


def _reference_script():
    spec = importlib.util.spec_from_file_location("docs_reference", REPO / "scripts" / "docs_reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    return ref


def test_generated_reference_pages_are_what_the_code_gives():
    ref = _reference_script()
    stale = [name for name, make in ref.PAGES.items() if (ref.OUT / name).read_text() != make()]
    assert not stale, f"stale: {stale}: run python scripts/docs_reference.py"


def test_an_exit_code_without_a_row_stops_the_generation_and_a_row_makes_it_a_line_of_the_page(monkeypatch):
    from flipout_repro.cli import failures

    ref = _reference_script()
    used = {v for v in vars(failures).values() if isinstance(v, int) and not isinstance(v, bool)}
    code = next(c for c in range(8, 100) if c not in used)
    monkeypatch.setattr(failures, "PLANTED_FAILURE", code, raising=False)
    with pytest.raises(RuntimeError, match=rf"exit code\(s\) \[{code}\]"):
        ref.exit_codes_page()
    row = f"    {code}{' ' * (5 - len(str(code)))}a planted failure\n"
    monkeypatch.setattr(failures, "__doc__", failures.__doc__.replace("    130  ", row + "    130  "))
    page = ref.exit_codes_page()
    assert "| 6 | stopped at a prune event" in page
    assert f"| {code} | a planted failure |\n| 130 |" in page


def test_the_site_builds_in_strict_mode(tmp_path):
    """A broken link, a page missing from the navigation's files or a bad reference fails the build."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "config" / "index.html").is_file()


def _shims(folder: Path) -> None:
    """An executable per console script of pyproject.toml, running this checkout's code."""
    folder.mkdir()
    for name, target in _reference_script().scripts().items():
        module, _, func = target.partition(":")
        path = folder / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "import sys; from {module} import {func}; '
                        f"sys.argv[0] = '{name}'; sys.exit({func}())\" \"$@\"\n")
        path.chmod(0o755)


def with_appended(code: str, extra: str | None) -> str:
    """``code`` with ``extra`` appended to every flipout-train command (before its comment)."""
    code = re.sub(r"[ \t]*\\\n\s*", " ", code)
    if not extra:
        return code
    lines = []
    for line in code.splitlines():
        if line.lstrip().startswith("flipout-train"):
            command, sep, comment = line.partition(" #")
            line = f"{command.rstrip()} {extra}" + (f"  #{comment}" if sep else "")
        lines.append(line)
    return "\n".join(lines) + "\n"


def _matches(expected: str, output: str) -> bool:
    parts = [re.escape(p) for p in expected.strip().split("...")]
    return re.search(".*?".join(parts), output) is not None


def run_block(b: Block, cwd: Path, env: dict[str, str]) -> None:
    if b.lang == "python":
        script = cwd / "_docs_block.py"
        script.write_text(b.code)
        done = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{b.where} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return
    if b.lang == "console":
        steps = re.split(r"^\$ ", b.code, flags=re.M)[1:]
        for step in steps:
            command, _, expected = step.partition("\n")
            done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
            output = done.stdout + done.stderr
            for want in filter(None, expected.splitlines()):
                assert _matches(want, output), f"{b.where}: `{command}` printed\n{output[-3000:]}\nnot\n{want}"
        return
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", with_appended(b.code, b.append)], cwd=cwd, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"{b.where} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _page_params() -> list:
    params = []
    for page in PAGES:
        todo = runnable(page)
        if todo:
            slow = any(LONG.search(b.code) for b in todo if b.lang != "console")
            params.append(pytest.param(page, id=str(page.relative_to(REPO)), marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("page", _page_params())
def test_every_block_of_the_page_runs(page, tmp_path):
    """The page's blocks in order, in a fresh folder, as a reader would type them."""
    _shims(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", MPLBACKEND="Agg",
               PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    for b in runnable(page):
        run_block(b, work, env)
    outside = [p for p in tmp_path.iterdir() if p.name not in ("bin", "work")]
    assert not outside, f"written outside the working folder: {outside}"
    shutil.rmtree(work, ignore_errors=True)


def test_with_appended_adds_overrides_to_each_training_command_before_its_comment():
    code = "flipout-train -m +sweep=tiny   # a sweep\nflipout-report\nflipout-train a=1 \\\n  b=2\n"
    assert with_appended(code, "seed=0") == ("flipout-train -m +sweep=tiny seed=0  # a sweep\nflipout-report\n"
                                             "flipout-train a=1 b=2 seed=0\n")


def test_a_console_block_matches_its_output_with_ellipses():
    assert _matches("error: epochs=3 is too short ...: use epochs>=9", "x error: epochs=3 is too short (8): use epochs>=9")
    assert not _matches("error: epochs=4", "error: epochs=3")


def test_the_readme_line_for_the_papers_setting_is_a_job_of_the_paper_sweep(tmp_path):
    """README's command for "the paper's setting" trains exactly the run +sweep=paper_vgg19 trains for that cell."""
    from helpers import make_cfg
    from flipout_repro.config.identity import identity
    from flipout_repro.config.targets import prepare
    from flipout_repro.reporting.sweep_status import sweep_jobs

    line = next(line for b in blocks(REPO / "README.md") for line in b.code.splitlines()
                if line.startswith("flipout-train experiment=vgg19_cifar10"))
    overrides = line.split("#")[0].split()[1:]
    ours = identity(prepare(make_cfg(*overrides, f"results_dir={tmp_path}"))[0])
    job = next(j for j in sweep_jobs("paper_vgg19", tmp_path)
               if (j.method, j.sparsity, j.seed) == ("flipout", 0.99609375, 42))
    assert (ours.hash, ours.seed) == (job.identity.hash, job.identity.seed)
