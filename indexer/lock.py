"""One indexer per data directory: an advisory lock the OS releases if the process dies.

``filelock`` picks the platform's lock (flock on Unix, msvcrt on Windows).
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from search.errors import PixseekError


class IndexLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "indexer.lock"
        self._lock = FileLock(self.path, timeout=0)

    def __enter__(self) -> IndexLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise PixseekError(
                f"another pixseek indexer is running on {self.path.parent}; "
                "wait for it to finish or stop it first"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
