"""One indexer per data directory: an advisory lock the OS releases if the process dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from search.errors import PixseekError


class IndexLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "indexer.lock"
        self._fd: int | None = None

    def __enter__(self) -> IndexLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PixseekError(
                f"another pixseek indexer is running on {self.path.parent}; "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
