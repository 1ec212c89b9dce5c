"""The second indexing stage: read the text in photos (OCR) once CLIP has made them
searchable, so OCR never delays the CLIP pass.

It drains a queue the store answers (``contents_needing_text``: indexed contents the
current OCR engine has not read), so it is incremental per content: a renamed or
duplicate file costs nothing, and a run stopped part way resumes where it stopped. Each
photo is read in a worker process with a time limit (``ocr.time_limit``); one that fails or
hangs is recorded with the reason and never stops indexing. Rows are committed every
COMMIT_EVERY photos.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass

from indexer.decode import worker_init
from search.config import Config
from search.errors import first_line
from search.ocr import TextReader, engine_id
from search.store import Store

log = logging.getLogger(__name__)

QUEUE_CHUNK = 64
COMMIT_EVERY = 8

_reader: TextReader | None = None


def _init_worker(min_confidence: float, max_side: int) -> None:
    global _reader
    worker_init()
    _reader = TextReader(min_confidence, max_side)


def _read(path: str) -> str:
    assert _reader is not None
    return _reader.read_file(path)


@dataclass
class TextSummary:
    read: int = 0  # photos whose text was read (with or without text in them)
    with_text: int = 0
    failed: int = 0
    seconds: float = 0.0


class TextStage:
    def __init__(self, config: Config, store: Store, cancel: threading.Event) -> None:
        self.config = config.ocr
        self.store = store
        self.cancel = cancel
        self.engine = engine_id()
        self._pool = None

    def _worker(self):
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # not fork: torch's threads
            self._pool = ctx.Pool(1, _init_worker, (self.config.min_confidence,
                                                    self.config.max_side))
        return self._pool

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def read_one(self, path: str) -> dict:
        """A ``ContentText`` row for the photo at ``path`` (failed: with the reason)."""
        job = self._worker().apply_async(_read, (path,))
        try:
            text = job.get(self.config.time_limit)
        except multiprocessing.TimeoutError:
            self._restart()  # the only way to stop a stuck recogniser
            return {"status": "failed", "text": "",
                    "error": f"reading its text took over {self.config.time_limit:g} s"}
        except Exception as exc:  # noqa: BLE001 - a bad photo is recorded, never fatal
            return {"status": "failed", "text": "", "error": first_line(exc)}
        return {"status": "ok", "text": text}

    def run(self) -> TextSummary:
        summary = TextSummary()
        started = time.perf_counter()
        after = self.store.newest_text_read(self.engine)  # those below were read, in id order
        try:
            while not self.cancel.is_set():
                queue = self.store.contents_needing_text(self.engine, after, QUEUE_CHUNK)
                if not queue:
                    break
                rows: list[dict] = []
                for cid, path in queue:
                    if self.cancel.is_set():
                        break
                    row = {"content_id": cid, "engine": self.engine, **self.read_one(path)}
                    summary.read += 1
                    summary.failed += row["status"] == "failed"
                    summary.with_text += bool(row["text"])
                    rows.append(row)
                    after = cid
                    if len(rows) >= COMMIT_EVERY:
                        self.store.save_texts(rows)
                        rows = []
                self.store.save_texts(rows)
        finally:
            self._restart()
        summary.seconds = round(time.perf_counter() - started, 3)
        if summary.read:
            log.info("read the text of %d photos (%d with text, %d failed) in %.1f s",
                     summary.read, summary.with_text, summary.failed, summary.seconds)
        return summary
