"""docs/fidelity.md and results/reference point only at what exists: every link of the fidelity page (files and
the page's own sections), every project path it or a reference CSV names, and every `source` of the reference
tables (results/reference/<source>.csv)."""
import csv
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIDELITY = REPO / "docs" / "fidelity.md"
REFERENCE = REPO / "results" / "reference"
#: a path of this repository as the docs and CSV comments write it (a reference repository's paths have no prefix)
PROJECT_PATH = re.compile(r"(?<![\w./:-])((?:docs|conf|tests|src|results|scripts)/[\w./-]*\w)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_slug_is_githubs():
    assert slug("Layer budgets (`budget=`) and N:M patterns (`pattern=`)") == \
        "layer-budgets-budget-and-nm-patterns-pattern"
    assert slug("RigL's published numbers (results/reference/rigl_paper.csv)") == \
        "rigls-published-numbers-resultsreferencerigl_papercsv"


def headings(text: str) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_every_link_of_the_fidelity_page_resolves():
    text = FIDELITY.read_text()
    anchors = headings(text)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links, "the page links its sections"
    bad = []
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        page = (FIDELITY.parent / target).resolve() if target else FIDELITY
        if not page.exists():
            bad.append(link)
        elif anchor and anchor not in (anchors if page == FIDELITY else headings(page.read_text())):
            bad.append(link)
    assert bad == []


def named_paths(text: str) -> set[str]:
    return {p.rstrip(".") for p in PROJECT_PATH.findall(text)}


@pytest.mark.parametrize("path", [FIDELITY, *sorted(REFERENCE.glob("*.csv"))], ids=lambda p: p.name)
def test_every_project_path_named_exists(path):
    text = path.read_text()
    if path.suffix == ".csv":  # the comments, not the data
        text = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    missing = sorted(p for p in named_paths(text) if not any(REPO.glob(p)))
    assert missing == []


def test_every_source_of_the_reference_tables_is_a_csv_there():
    sources = set()
    for name in ("presets.csv", "sweeps.csv"):
        rows = csv.DictReader(line for line in (REFERENCE / name).read_text().splitlines() if not line.startswith("#"))
        sources |= {s for row in rows for s in row["source"].split() if s != "none"}  # space-separated
    assert {"flipout_paper", "rigl_paper", "str_paper"} <= sources
    assert [s for s in sorted(sources) if not (REFERENCE / f"{s}.csv").is_file()] == []


def test_a_dangling_path_is_caught():
    assert named_paths("see docs/fidelity/dst.md and conf/sweep/force_quickstart.yaml.") == \
        {"docs/fidelity/dst.md", "conf/sweep/force_quickstart.yaml"}
    assert not any(REPO.glob("docs/fidelity/dst.md"))
    assert named_paths("rigl:rigl/cifar_resnet/data_helper.py:82 and flipout:utils/getters.py") == set()
