"""The deployable source archive of the functions: main.py, requirements.txt and src/.

Cloud Functions builds the archive's requirements.txt and imports main.py from the archive root;
main.py puts `src` on sys.path. The same allowlist as the Terraform module's archive: nothing else
(virtual environments, caches, tests) ships. Entries are sorted with fixed timestamps so that the
same source always gives the same bytes (and the same object name in the source bucket).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def archive_files(root: Path = ROOT) -> Iterator[tuple[Path, str]]:
    """(file, name in the archive) for everything that ships, sorted by name."""
    files = [root / "main.py", root / "requirements.txt"]
    for path in (root / "src").rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not (
            _SKIP_DIRS.intersection(relative.parts)
            or path.suffix in _SKIP_SUFFIXES
            or any(part.endswith(".egg-info") for part in relative.parts)
        ):
            files.append(path)
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        if not path.is_file():
            raise FileNotFoundError(f"the deployable source needs {path}")
        yield path, path.relative_to(root).as_posix()


def build_archive(dest: Path, root: Path = ROOT) -> Path:
    """Write the deployable zip to `dest` (a file path) and return it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in archive_files(root):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return dest
