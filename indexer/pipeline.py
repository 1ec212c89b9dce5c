"""The indexing pipeline: scan -> diff against the store -> hash -> decode -> encode -> store.

Files are handled in chunks of ``CHUNK`` scanned paths so memory stays bounded. For a chunk:

1. unchanged files (same size and mtime) are skipped, unless their content lacks a vector for
   the current model;
2. new and changed files are hashed (threads: hashlib releases the GIL); a content already in
   the store with a vector for this model is reused with no decode (rename, move, duplicate);
3. the rest are decoded in worker processes and encoded in batches; each batch is one
   transaction writing contents, embeddings and files together, so a kill -9 loses at most
   the batch in flight and duplicates nothing (architecture invariant 4);
4. bad files are stored with their reason and retried only when their size or mtime changes.

After a root's scan completes, files under it that are gone (or now ignored) are removed.
At the end of the run, contents no file points at any more (deleted, or edited into new
content) are collected from the store with their vectors, and the vector index follows:
it reads only what changed, and folds it into a new snapshot once enough has.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select

from indexer.decode import DecodeJob, content_hash, decode_pool, ordered_map, run_decode_job
from indexer.scan import Scanner, Seen
from search.config import Config
from search.encoders import Encoder
from search.errors import InputError
from search.preprocess import BadImage, Decoded
from search.store import (
    STATUS_FAILED,
    STATUS_OK,
    Content,
    Embedding,
    File,
    Store,
    utcnow,
)
from search.vectors import VectorIndex, index_for

CHUNK = 512
MAX_FAILURES_LISTED = 1000  # failures kept in a run's summary
SMALL_RUN = 8  # fewer files than this to decode: no worker processes


@dataclass
class IndexSummary:
    """What one run did; ``--json`` prints it."""

    seen: int = 0
    unchanged: int = 0
    encoded: int = 0  # new vectors computed by the model
    reused: int = 0  # files that got a stored vector without a decode (rename, duplicate)
    removed: int = 0  # files gone from disk, removed from the store
    collected: int = 0  # contents no file shows any more, deleted with their vectors
    failed: int = 0  # bad files recorded in this run
    seconds: float = 0.0
    cancelled: bool = False  # stopped early on request; a later run finishes the job
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the run changed anything in the store (what the watcher reports)."""
        return bool(
            self.encoded or self.reused or self.removed or self.collected or self.failed
        )

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """The run in words, as the CLI, the watcher and the demo print it."""
        gone = f" ({self.collected} photos gone)" if self.collected else ""
        return (f"{self.encoded} encoded, {self.reused} reused, {self.unchanged} unchanged, "
                f"{self.removed} removed{gone}, {self.failed} failed in {self.seconds:.1f}s")


@dataclass
class _Pending:
    """Files waiting for one content's vector: a new content, or one missing this model."""

    files: list[Seen]
    hash: str
    content_id: int | None


class Indexer:
    def __init__(
        self, config: Config, store: Store, encoder: Encoder, progress: bool | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.encoder = encoder
        self.model = encoder.model_id
        cfg = config.library
        self.scanner = Scanner(cfg.extensions, cfg.ignore, cfg.follow_symlinks)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.batches_committed = 0
        self._pool: Executor | None = None
        self._vectors: VectorIndex | None = None
        # Contents that lost a file in this run: collected at its end if no file is left.
        # (Not at once: a file moved to a folder scanned later in the run keeps its vector.)
        self._unlinked: set[int] = set()
        # Set from another thread (a signal handler, the watcher) to stop after the chunk
        # in flight: everything committed so far stays, the next run picks up the rest.
        self.cancel = threading.Event()

    # -- entry point ---------------------------------------------------------------------

    def index(self, roots: Iterable[str | Path]) -> IndexSummary:
        """Index folders (or single files); files gone from a scanned folder are removed."""
        resolved = []
        for root in roots:
            path = Path(root).expanduser()
            if not path.exists():
                raise InputError(f"no such file or folder: {root}")
            resolved.append(str(path.resolve()))
        return self._run([(root, self.scanner.walk(root)) for root in resolved])

    def index_files(self, paths: Iterable[str | Path]) -> IndexSummary:
        """Index exactly these files, batched together (a benchmark's image list)."""

        def stat_all() -> Iterator[Seen]:
            for p in paths:
                path = str(Path(p).expanduser().resolve())
                try:
                    st = os.stat(path)
                except OSError as exc:
                    raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
                yield Seen(path, st.st_size, st.st_mtime_ns)

        return self._run([(None, stat_all())])

    def _run(self, streams: list[tuple[str | None, Iterator[Seen]]]) -> IndexSummary:
        summary = IndexSummary()
        started = time.perf_counter()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(unit=" files", desc="indexing", dynamic_ncols=True)
        try:
            with ThreadPoolExecutor(self.config.indexer.hash_threads) as hashers:
                for root, files in streams:
                    for chunk in _chunks(files, CHUNK):
                        if self.cancel.is_set():
                            break
                        self._index_chunk(chunk, summary, hashers)
                        self._follow_store()
                        if bar is not None:
                            bar.update(len(chunk))
                            bar.set_postfix(encoded=summary.encoded, failed=summary.failed)
                    if self.cancel.is_set():
                        summary.cancelled = True
                        break
                    if root is not None and os.path.isdir(root):
                        summary.removed += self._remove_missing(root)
        finally:
            if bar is not None:
                bar.close()
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None
        if self._unlinked:
            summary.collected = self.store.collect_orphans(self._unlinked).contents
            self._unlinked = set()
        if summary.changed or self._vectors is None:
            self._follow_store()
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary

    def _follow_store(self) -> None:
        """Bring the vector index up to the store, and snapshot it when enough changed.
        Reads only the rows written since it last looked (nothing when none were)."""
        if self._vectors is None:
            self._vectors = index_for(self.store, self.model, self.config).open()
        else:
            self._vectors.refresh()
        self._vectors.persist()

    # -- one chunk -----------------------------------------------------------------------

    def _index_chunk(
        self,
        chunk: list[Seen],
        summary: IndexSummary,
        hashers: Executor,
    ) -> None:
        """One chunk of scanned files: skip the unchanged, hash the rest, reuse stored
        vectors for known contents, encode the new ones, record the bad files."""
        summary.seen += len(chunk)
        to_hash, stored_content, failures = self._triage(chunk, summary)
        by_hash = self._hash(to_hash, hashers, failures)
        reuse, pending = self._match_contents(by_hash, stored_content)
        if reuse:
            with self.store.session() as s:
                self._upsert_files(s, [(f, cid, STATUS_OK, None) for f, cid in reuse])
            summary.reused += len(reuse)
        self._record_failures(failures, summary)
        self._encode_pending(pending, summary)

    def _triage(
        self, chunk: list[Seen], summary: IndexSummary
    ) -> tuple[list[Seen], list[tuple[Seen, int]], list[tuple[Seen, str]]]:
        """(files to hash, unchanged files whose stored content lacks this model's vector,
        failures); unchanged files that need nothing are only counted."""
        with self.store.session() as s:
            rows = {
                r.path: r
                for r in s.execute(
                    select(File.path, File.size, File.mtime_ns, File.status, File.content_id)
                    .where(File.path.in_([seen.path for seen in chunk]))
                ).all()
            }
            known_ids = [r.content_id for r in rows.values() if r.content_id is not None]
            with_vector = self._contents_with_vector(s, known_ids)
        to_hash: list[Seen] = []
        stored_content: list[tuple[Seen, int]] = []
        failures: list[tuple[Seen, str]] = []
        for seen in chunk:
            row = rows.get(seen.path)
            if row is not None and (row.size, row.mtime_ns) == (seen.size, seen.mtime_ns):
                if row.status == STATUS_FAILED or row.content_id in with_vector:
                    summary.unchanged += 1
                    continue
                if row.content_id is not None:  # known content, no vector for this model yet
                    stored_content.append((seen, row.content_id))
                    continue
            if seen.size == 0:
                failures.append((seen, str(BadImage.empty())))
            else:
                to_hash.append(seen)
        return to_hash, stored_content, failures

    @staticmethod
    def _hash(
        files: list[Seen], hashers: Executor, failures: list[tuple[Seen, str]]
    ) -> dict[str, list[Seen]]:
        """Files by content hash, read in threads; unreadable ones join ``failures``."""
        by_hash: dict[str, list[Seen]] = {}
        for seen, digest in zip(files, hashers.map(_safe_hash, (f.path for f in files)),
                                strict=True):
            if isinstance(digest, BadImage):
                failures.append((seen, str(digest)))
            else:
                by_hash.setdefault(digest, []).append(seen)
        return by_hash

    def _match_contents(
        self, by_hash: dict[str, list[Seen]], stored_content: list[tuple[Seen, int]]
    ) -> tuple[list[tuple[Seen, int]], list[_Pending]]:
        """(files that reuse a content's stored vector, contents still to encode)."""
        with self.store.session() as s:
            if stored_content:  # unchanged files: their stored hash spares a re-read
                hash_of = dict(
                    s.execute(
                        select(Content.id, Content.hash).where(
                            Content.id.in_([cid for _, cid in stored_content])
                        )
                    ).all()
                )
                for seen, cid in stored_content:
                    by_hash.setdefault(hash_of[cid], []).append(seen)
            known = dict(
                s.execute(select(Content.hash, Content.id).where(Content.hash.in_(list(by_hash))))
                .all()
            )
            have = self._contents_with_vector(s, list(known.values()))
        reuse: list[tuple[Seen, int]] = []
        pending: list[_Pending] = []
        for digest, files in by_hash.items():
            cid = known.get(digest)
            if cid is not None and cid in have:
                reuse.extend((f, cid) for f in files)
            else:
                pending.append(_Pending(files, digest, cid))
        return reuse, pending

    def _decode_pool(self, jobs: int) -> Executor | None:
        """Worker processes, started on first need: a run that decodes a handful of files
        (an incremental run, the watcher) does it in-process instead of paying the start."""
        workers = self.config.indexer.worker_count()
        if workers == 0 or jobs < SMALL_RUN:
            return self._pool
        if self._pool is None:
            self._pool = decode_pool(workers)
        return self._pool

    def _encode_pending(self, pending: list[_Pending], summary: IndexSummary) -> None:
        pool = self._decode_pool(len(pending))
        cfg = self.config.indexer
        batch_size = self.config.model.batch_size
        jobs = (
            DecodeJob(
                p.files[0].path,
                p.hash,
                self.encoder.spec,
                cfg.max_image_pixels,
                cfg.jpeg_draft,
            )
            for p in pending
        )
        window = max(2 * batch_size, 4 * max(1, cfg.worker_count()))
        decoded = ordered_map(pool, run_decode_job, jobs, window)
        batch: list[tuple[_Pending, Decoded]] = []
        failures: list[tuple[Seen, str]] = []
        for item, result in zip(pending, decoded, strict=True):
            if isinstance(result, BadImage):
                failures.extend((f, str(result)) for f in item.files)
                continue
            batch.append((item, result))
            if len(batch) == batch_size:
                self._commit_batch(batch, summary)
                batch = []
        if batch:
            self._commit_batch(batch, summary)
        self._record_failures(failures, summary)

    def _commit_batch(self, batch: list[tuple[_Pending, Decoded]], summary: IndexSummary) -> None:
        vectors = self.encoder.encode_pixels(np.stack([d.pixels for _, d in batch]))
        with self.store.session() as s:
            new = [(item, dec) for item, dec in batch if item.content_id is None]
            new_ids = iter(self.store.insert_contents(s, [
                {"hash": item.hash, "size": item.files[0].size, "width": dec.width,
                 "height": dec.height, "format": dec.format, "taken_at": dec.taken_at,
                 "camera": dec.camera}
                for item, dec in new
            ]))
            cids = [
                item.content_id if item.content_id is not None else next(new_ids)
                for item, _ in batch
            ]
            self.store.insert_embeddings(s, self.model, cids, vectors)
            self._upsert_files(s, [
                (f, cid, STATUS_OK, None)
                for (item, _), cid in zip(batch, cids, strict=True)
                for f in item.files
            ])
        summary.encoded += len(batch)
        summary.reused += sum(len(item.files) - 1 for item, _ in batch)
        self.batches_committed += 1

    # -- store helpers -------------------------------------------------------------------

    def _contents_with_vector(self, s, content_ids: list[int]) -> set[int]:
        if not content_ids:
            return set()
        return set(
            s.execute(
                select(Embedding.content_id).where(
                    Embedding.model == self.model, Embedding.content_id.in_(content_ids)
                )
            ).scalars()
        )

    def _upsert_files(self, s, items: list[tuple[Seen, int | None, str, str | None]]) -> None:
        if not items:
            return
        existing = {
            f.path: f
            for f in s.execute(
                select(File).where(File.path.in_([seen.path for seen, *_ in items]))
            ).scalars()
        }
        for seen, cid, status, error in items:
            row = existing.get(seen.path)
            if row is None:
                row = File(path=seen.path)
                s.add(row)
                existing[seen.path] = row
            if row.content_id is not None and row.content_id != cid:
                self._unlinked.add(row.content_id)  # edited, or now unreadable
            row.size, row.mtime_ns = seen.size, seen.mtime_ns
            row.content_id, row.status, row.error = cid, status, error
            row.updated_at = utcnow()

    def _record_failures(self, failures: list[tuple[Seen, str]], summary: IndexSummary) -> None:
        if not failures:
            return
        with self.store.session() as s:
            self._upsert_files(s, [(f, None, STATUS_FAILED, reason) for f, reason in failures])
        summary.failed += len(failures)
        # The first MAX_FAILURES_LISTED failures ride along in the summary (memory stays
        # bounded on a library of broken files); every one is in the store, for status.
        room = max(0, MAX_FAILURES_LISTED - len(summary.failures))
        summary.failures.extend(
            {"path": f.path, "error": reason} for f, reason in failures[:room]
        )

    def _remove_missing(self, root: str) -> int:
        """Delete file rows under ``root`` that the scan would no longer report."""
        prefix = root.rstrip(os.sep) + os.sep
        removed, last = 0, ""
        while True:
            with self.store.session() as s:
                rows = s.execute(
                    select(File.id, File.path, File.content_id)
                    .where(File.path.startswith(prefix, autoescape=True), File.path > last)
                    .order_by(File.path)
                    .limit(1000)
                ).all()
                if not rows:
                    return removed
                last = rows[-1].path
                gone = [r for r in rows if not self.scanner.wants(r.path, root)]
                if gone:
                    s.execute(delete(File).where(File.id.in_([r.id for r in gone])))
                    self._unlinked.update(r.content_id for r in gone if r.content_id is not None)
                    removed += len(gone)


def _safe_hash(path: str) -> str | BadImage:
    """The content hash, or why the file cannot be read (a value: the thread map goes on)."""
    try:
        return content_hash(path)
    except OSError as exc:
        return BadImage.unreadable(exc)


def _chunks(items: Iterator[Seen], size: int) -> Iterator[list[Seen]]:
    while chunk := list(islice(items, size)):
        yield chunk
