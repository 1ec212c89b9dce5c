"""``pixseek watch``: keep the index current while photos come and go.

watchdog reports file events; each one marks the folder it happened in as dirty. A folder is
indexed once the library has been quiet for ``watch.settle_seconds``, by the same pipeline
``pixseek index`` runs (so a deleted or moved file is handled by the folder rescan, and a
half-written file that fails to decode is retried when its writer touches it again). A full
rescan of every root runs at start and every ``watch.rescan_minutes``, for whatever the OS
did not report. Events only mark folders, so memory stays small whatever arrives.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from indexer.pipeline import Indexer, IndexSummary
from indexer.scan import relative

log = logging.getLogger(__name__)


class _Marker(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads change nothing
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = os.fsdecode(raw)
                self.watcher.mark(path if event.is_directory else os.path.dirname(path))


class Watcher:
    def __init__(
        self,
        indexer: Indexer,
        roots: list[str | Path],
        on_run: Callable[[list[str], IndexSummary], None] | None = None,
    ) -> None:
        self.indexer = indexer
        self.roots = [str(Path(r).expanduser().resolve()) for r in roots]
        self.settle = indexer.config.watch.settle_seconds
        self.rescan = indexer.config.watch.rescan_minutes * 60
        self.on_run = on_run
        self._dirty: set[str] = set()
        self._last_event = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the first full scan is done

    def mark(self, folder: str) -> None:
        with self._lock:
            self._dirty.add(folder)
            self._last_event = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self.indexer.cancel.set()

    def _run_index(self, paths: list[str]) -> None:
        existing = [p for p in paths if os.path.exists(p)]
        if not existing:
            return
        summary = self.indexer.index(existing)
        if summary.changed:
            log.info("%s: %s", ", ".join(existing), summary.line())
        if self.on_run is not None:
            self.on_run(existing, summary)

    def _take_settled(self) -> list[str]:
        """Dirty folders, once no event came for ``settle`` seconds; nested ones collapse."""
        with self._lock:
            if not self._dirty or time.monotonic() - self._last_event < self.settle:
                return []
            dirty, self._dirty = sorted(self._dirty), set()
        # A folder's rescan covers its subfolders; a vanished folder is rescanned via its
        # nearest existing parent inside a root, which removes what it held.
        folders: list[str] = []
        for folder in dirty:
            root = next((r for r in self.roots if folder == r or folder.startswith(r + os.sep)),
                        None)
            if root is None:
                continue
            while not os.path.isdir(folder) and folder != root:
                folder = os.path.dirname(folder)
            if folder != root and self.indexer.scanner.ignored(relative(folder, root),
                                                              is_dir=True):
                continue  # e.g. a NAS's @eaDir thumbnails or a .git folder
            if not any(folder == f or folder.startswith(f + os.sep) for f in folders):
                folders.append(folder)
        return folders

    def run(self) -> None:
        """Watch until ``stop()``; returns after the current index run finishes."""
        observer = Observer()
        for root in self.roots:
            observer.schedule(_Marker(self), root, recursive=True)
        observer.start()
        try:
            self._run_index(self.roots)  # catch up with what changed while we were away
            self.ready.set()
            next_rescan = time.monotonic() + self.rescan if self.rescan else float("inf")
            while not self._stop.wait(min(0.25, self.settle or 0.25)):
                folders = self._take_settled()
                if folders:
                    self._run_index(folders)
                if time.monotonic() >= next_rescan:
                    self._run_index(self.roots)
                    next_rescan = time.monotonic() + self.rescan
        finally:
            observer.stop()
            observer.join(timeout=5)
