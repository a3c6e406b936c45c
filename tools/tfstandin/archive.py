"""The archive provider's `archive_file` data source, done for real: the zip is built at plan
time (as the real provider does) and its hashes are the hashes of that file.

Relative paths are Terraform's: relative to the folder Terraform runs in, which is the working
directory of a provider Terraform starts, but not of one it attaches to (then `base` says it).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path
from typing import Any

_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same inputs give the same archive


def _entries(config: dict[str, Any], base: Path) -> list[tuple[str, bytes]]:
    entries: list[tuple[str, bytes]] = []
    if config.get("source_content") is not None:
        name = config.get("source_content_filename")
        if not name:
            raise ValueError("source_content needs source_content_filename")
        entries.append((name, str(config["source_content"]).encode()))
    if config.get("source_file"):
        path = base / config["source_file"]
        entries.append((path.name, path.read_bytes()))
    if config.get("source_dir"):
        root = base / config["source_dir"]
        excludes = set(config.get("excludes") or [])
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if rel not in excludes:
                entries.append((rel, path.read_bytes()))
    for source in config.get("source") or []:
        entries.append((source["filename"], str(source["content"]).encode()))
    if not entries:
        raise ValueError(
            "archive_file needs one of source, source_content, source_file, source_dir"
        )
    return sorted(entries)


def read_archive_file(config: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """The data source's state: `config` plus the hashes of the zip written to output_path."""
    if config.get("type") != "zip":
        raise ValueError(f"archive type {config.get('type')!r} is not supported (zip is)")
    base = base if base is not None else Path.cwd()
    output = base / config["output_path"]  # an absolute output_path stays as it is
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in _entries(config, base):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    data = output.read_bytes()
    sha1 = hashlib.sha1(data).hexdigest()
    sha256 = hashlib.sha256(data).digest()
    sha512 = hashlib.sha512(data).digest()
    return {
        **config,
        "id": sha1,
        "output_size": len(data),
        "output_sha": sha1,
        "output_sha256": sha256.hex(),
        "output_base64sha256": base64.b64encode(sha256).decode(),
        "output_sha512": sha512.hex(),
        "output_base64sha512": base64.b64encode(sha512).decode(),
        "output_md5": hashlib.md5(data).hexdigest(),
    }
