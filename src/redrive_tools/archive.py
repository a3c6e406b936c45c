"""The deployable source archive of the functions: the files `deploy-files.txt` lists.

Cloud Functions builds the archive's requirements.txt and imports main.py from the archive root;
main.py puts `src` on sys.path. The allowlist is one file, read here and by the Terraform module
(`terraform/main.tf`), so both archives hold exactly the function runtime: the operator tools and
the emulator never ship. Entries are sorted with fixed timestamps so that the same source always
gives the same bytes (and the same object name in the source bucket).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWLIST = "deploy-files.txt"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def allowlist(root: Path = ROOT) -> list[str]:
    """The patterns of `deploy-files.txt`: one per line, `#` comments and blank lines skipped."""
    lines = (line.strip() for line in (root / ALLOWLIST).read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _matches(root: Path, pattern: str) -> list[Path]:
    """Files matching a Terraform `fileset` pattern (`dir/**` is every file below dir)."""
    if pattern.endswith("/**"):
        return [p for p in (root / pattern[:-3]).rglob("*") if p.is_file()]
    found = [p for p in root.glob(pattern) if p.is_file()]
    if not found and not any(ch in pattern for ch in "*?["):
        raise FileNotFoundError(f"the deployable source needs {root / pattern}")
    return found


def shipped(relative: str) -> bool:
    """False for the build litter every archive leaves out."""
    return "__pycache__/" not in relative and not relative.endswith(".pyc")


def archive_files(root: Path = ROOT) -> Iterator[tuple[Path, str]]:
    """(file, name in the archive) for everything that ships, sorted by name."""
    names = {
        path.relative_to(root).as_posix(): path
        for pattern in allowlist(root)
        for path in _matches(root, pattern)
    }
    for name in sorted(names):
        if shipped(name):
            yield names[name], name


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
