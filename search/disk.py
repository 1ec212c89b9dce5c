"""Disk facts a person can act on: whether a folder can be written, how much is free, and
the one-line errors for a full disk or a read-only library."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from search.errors import StorageError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def nearest_existing(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (or where it would be created). Tried for
    real: root ignores permission bits, not a read-only mount."""
    folder = nearest_existing(Path(folder))
    if not folder.is_dir():
        return False
    if os.statvfs(folder).f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
        return False
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pixseek-write-check.")
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(nearest_existing(Path(path))).free
    except OSError:
        return 0


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def full_error(path: Path, needed: int) -> StorageError:
    free = free_bytes(Path(path).parent)
    return StorageError(
        f"the disk holding {path} is full ({size_text(free)} free; about "
        f"{size_text(needed)} needed): free some space and run the command again. "
        "Nothing already committed is lost."
    )


def read_only_error(path: Path) -> StorageError:
    return StorageError(
        f"{path} is read-only: searching it works, indexing cannot. Index into a writable "
        "copy of the data dir, or remount it read-write."
    )


def storage_error(exc: OSError, path: Path, needed: int) -> StorageError | None:
    """The one-line error for a full or read-only disk, None for any other OSError."""
    if exc.errno in FULL_ERRNOS:
        return full_error(path, needed)
    if exc.errno in READ_ONLY_ERRNOS:
        return read_only_error(path)
    return None
