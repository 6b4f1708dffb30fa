"""Rules the suite keeps about itself: a loaded machine makes it slower, never red."""
import re
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_wall_clock_limit_in_tests():
    """No ``timeout=`` on a subprocess, a communicate or a wait: a slow machine is not a failure."""
    hits = []
    for path in sorted(p for p in TESTS.rglob("*.py") if p.name != Path(__file__).name):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\btimeout\s*=", line) and "timeout_min" not in line:
                hits.append(f"{path.relative_to(TESTS)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
