"""The documentation site builds, strictly (any warning fails), with its examples executed.

Code blocks marked ``exec="on"`` are run by markdown-exec while the site is built; an example that raises fails the
build. The CLI reference is generated from the Typer app (Typer's own docs writer, run in such a block) and the API
reference from the docstrings, so both fail here when they drift from the code.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


def executed_blocks() -> dict[str, int]:
    """Pages with blocks executed at build time (examples, and their hidden set-up), and how many each."""
    found = {}
    for page in sorted((ROOT / "docs").rglob("*.md")):
        n = len(re.findall(r'^```python[^\n]*exec="on"', page.read_text(), flags=re.M))
        if n:
            found[str(page.relative_to(ROOT / "docs"))] = n
    return found


def test_the_site_builds_strict_with_its_examples_executed(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    scratch = tmp_path / "tmp"  # what the examples leave behind, if anything
    scratch.mkdir()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "TMPDIR": str(scratch)}
    t0 = time.perf_counter()
    # not -q: quiet mode drops the warnings that --strict counts
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-4000:]
    blocks = executed_blocks()
    print(f"docs: built in {seconds:.0f} s, {sum(blocks.values())} executed blocks ({blocks})")
    assert blocks, "no executed example in the docs"
    quick = (tmp_path / "site" / "quickstart" / "index.html").read_text()
    assert re.search(r"held-out accuracy \d\.\d{3} on \d+ sentences", quick)  # the example's own output
    shown = html.unescape(re.sub(r"<[^>]+>", "", quick))
    assert 'headstart.fit("demo-text", model="minilm"' in shown  # and the example itself, shown above it
    assert "build.cleanup()" not in shown  # its hidden set-up is not
    assert not list(scratch.rglob("runs"))  # no run folder left behind by the examples
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "--strategy" in cli and "explain" in cli and "tune" in cli
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "Fit a transferred model and write its run directory" in api
