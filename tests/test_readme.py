"""The README's (and the docs pages') claims point at real things: every test they cite exists,
every file they link."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_cited_test_exists():
    assert re.findall(r"`(tests/[\w/]+\.py)::(\w+)", README), "the Guarantees cite tests"
    cited = {
        c for page in PAGES for c in re.findall(r"`(tests/[\w/]+\.py)::(\w+)", page.read_text())
    }
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name}"


def test_every_linked_file_exists():
    for page in PAGES:
        for target in re.findall(r"\]\(((?!https?://|#)[^)#]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links {target}"


def test_quick_start_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M), target
