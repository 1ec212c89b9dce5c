"""Writing a file so that readers see the old one or the new one, never half of either."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, fsync: bool = False) -> Iterator[IO]:
    """Yield a file to write; on success it replaces ``path`` in one rename, on any error
    it is removed. The temporary file sits beside ``path`` (a rename never crosses file
    systems) under a unique name (two writers never share one). ``fsync`` makes the bytes
    durable before the rename, for files a crash must not tear."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_dir() -> Path:
    """pixseek's folder in the user's cache (``$XDG_CACHE_HOME`` or ``~/.cache``): model
    exports, measured choices, label embeddings."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pixseek"
