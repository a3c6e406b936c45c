"""The README's claims point at real things: every test it cites exists, every file it links."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_cited_test_exists():
    cited = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)", README))
    assert cited, "the Guarantees section cites tests by file::name"
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name}"


def test_every_linked_file_exists():
    for target in re.findall(r"\]\(((?!https?://|#)[^)]+)\)", README):
        assert (ROOT / target).exists(), target


def test_quick_start_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M), target
