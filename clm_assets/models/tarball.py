"""A directory as reproducible bytes: the same files give the same tar, whoever wrote them.

A model's version is the hash of its bytes, so the archive of a saved model must not carry
when or by whom its files were written: members are sorted, times are 0, owners are root
with no names, modes are fixed (0o755 directories, 0o644 files) and nothing is written
that only ``PAX`` headers could hold for ordinary names (no sub-second mtimes).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path


def pack_directory(root: Path, *, compress: bool) -> bytes:
    """The files and folders under ``root`` (names relative to it) as a tar, gzipped (with
    a zero gzip timestamp) when ``compress``."""
    buffer = io.BytesIO()
    if compress:
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz:
            _write(gz, root)
    else:
        _write(buffer, root)
    return buffer.getvalue()


def _write(fileobj, root: Path) -> None:
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_file():
                info.mode = 0o644
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                info.mode = 0o755
                tar.addfile(info)
