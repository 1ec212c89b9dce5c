"""The indexing pipeline: scan -> diff against the store -> hash -> decode -> encode -> store.

Files are handled in chunks of ``CHUNK`` scanned paths so memory stays bounded. For a chunk:

1. unchanged files (same size and mtime) are skipped, unless their content lacks a vector for
   the current model;
2. new and changed files are hashed (threads: hashlib releases the GIL); a content already in
   the store with a vector for this model is reused with no decode (rename, move, duplicate);
3. the rest are decoded in worker processes and encoded in batches; each batch is one
   transaction writing contents, embeddings and files together, so a kill -9 loses at most
   the batches in flight and duplicates nothing (architecture invariant 4);
4. bad files are stored with their reason and retried only when their size or mtime changes.

The model is kept busy: an encode thread runs batch n+1 right after batch n while the main
thread gathers batch n+2 from the decode workers, one writer thread commits batch n (hand-offs
of one batch, so memory stays bounded; torch and OpenVINO release the GIL while they encode),
and the decode workers stream across chunks: the next chunk is prepared and its
decodes submitted while the current chunk's last batches are still decoding, so the pool never
drains at a chunk boundary. Since a chunk is matched against the store before the previous
chunk's last batches are committed, the commit resolves content hashes again in its own
transaction: a duplicate across the boundary becomes a reuse, never a second content.

After a root's scan completes, files under it that are gone (or now ignored) are removed.
At the end of the run, contents no file points at any more (deleted, or edited into new
content) are collected from the store with their vectors, and the vector index follows:
it reads only what changed, and folds it into a new snapshot once enough has.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from pathlib import Path

import numpy as np

from indexer.decode import DecodeJob, content_hash, decode_pool, ordered_map, run_decode_job
from indexer.scan import Scanner, Seen
from search.config import Config
from search.encoders import Encoder
from search.errors import InputError
from search.preprocess import BadImage, Decoded
from search.store import STATUS_FAILED, STATUS_OK, Store
from search.vectors import VectorIndex, index_for, snapshot
from search.vectors.queries import QuerySample, worth_seeding
from search.wording import plural

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
    places_read: int = 0  # photos whose EXIF GPS position the place stage read
    texts_read: int = 0  # photos whose text the OCR stage read in this run
    texts_failed: int = 0
    texts_seconds: float = 0.0  # of ``seconds``, the OCR stage's (after the CLIP pass)
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
        gone = f" ({plural(self.collected, 'photo')} gone)" if self.collected else ""
        text = (f"; text read in {self.texts_read} ({self.texts_failed} failed)"
                if self.texts_read else "")
        return (f"{self.encoded} encoded, {self.reused} reused, {self.unchanged} unchanged, "
                f"{self.removed} removed{gone}, {self.failed} failed{text} "
                f"in {self.seconds:.1f}s")


@dataclass
class _Pending:
    """Files waiting for one content's vector: a new content, or one missing this model."""

    files: list[Seen]
    hash: str
    content_id: int | None


@dataclass
class _Encoded:
    """One batch, encoded, on its way to the writer: rows and vectors, no pixels."""

    items: list[_Pending]
    contents: list[dict]  # the Content row of each item, were it new
    vectors: np.ndarray

    @classmethod
    def of(cls, decoded: list[tuple[_Pending, Decoded]], vectors: np.ndarray) -> _Encoded:
        """The batch of these decoded contents and their vectors (local or from Ray)."""
        return cls([item for item, _ in decoded],
                   [_content_row(item, dec) for item, dec in decoded], vectors)


class _Writer:
    """One thread that commits encoded batches in order, one transaction each, while the
    caller encodes the next. The hand-off holds one batch: memory stays bounded. An error in
    a commit is raised in the caller at its next ``put`` or at ``close``; the batches after
    it are dropped, never committed out of order."""

    def __init__(self, commit: Callable[[_Encoded], None]) -> None:
        self._commit = commit
        self._queue: queue.Queue[_Encoded | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._raised = False
        self._thread = threading.Thread(target=self._loop, name="pixseek-writer", daemon=True)
        self._thread.start()

    def put(self, batch: _Encoded) -> None:
        self._check()
        self._queue.put(batch)

    def close(self, raise_error: bool = True) -> None:
        """Commit what was handed over, stop the thread, raise its error if any."""
        self._queue.put(None)
        self._thread.join()
        if raise_error:
            self._check()

    def _loop(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._commit(batch)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error


class _EncodeAhead:
    """Encodes batches on a thread of its own, one batch ahead of the caller: the model starts
    batch n+1 the moment batch n ends, while the caller gathers batch n+2 from the decode
    workers (measured on 2 cores: the encoder sat idle 0.3-0.5 s of an 8 s run between
    batches). ``put`` hands a batch over and passes the previous one's result on, in order;
    at most two batches wait (one encoding, one queued). Leaving the block passes the last
    result on; an error, there or in ``put``, is raised in the caller."""

    def __init__(self, encode: Callable[[list], _Encoded], done: Callable[[_Encoded], None]):
        self._encode, self._done = encode, done
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="pixseek-encode")
        self._in_flight: Future | None = None

    def put(self, batch: list) -> None:
        future = self._thread.submit(self._encode, batch)
        self._flush()
        self._in_flight = future

    def _flush(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self._done(future.result())

    def __enter__(self) -> _EncodeAhead:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:  # on an error the queued batch is dropped; a running one ends first
            self._thread.shutdown(wait=True, cancel_futures=True)


class Indexer:
    def __init__(
        self, config: Config, store: Store, encoder: Encoder, progress: bool | None = None,
        pool: Executor | None = None,
    ) -> None:
        """``pool``: decode workers already started (``indexer.session.open_indexer`` starts
        them while the model loads); the first run uses them, and shuts them down at its end."""
        self.config = config
        self.store = store
        self.encoder = encoder
        self.model = encoder.model_id
        cfg = config.library
        self.scanner = Scanner(cfg.extensions, cfg.ignore, cfg.follow_symlinks)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.batches_committed = 0
        self._pool: Executor | None = pool
        self._vectors: VectorIndex | None = None
        self._seeded = False  # the model's text queries are stored for index tuning
        # Contents that lost a file in this run: collected at its end if no file is left.
        # (Not at once: a file moved to a folder scanned later in the run keeps its vector.)
        self._unlinked: set[int] = set()
        # Set from another thread (a signal handler, the watcher) to stop after the chunk
        # in flight: everything committed so far stays, the next run picks up the rest.
        self.cancel = threading.Event()

    def close(self) -> None:
        """Stop the decode workers: at the end of each run, and for workers started early
        that no run used."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

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
        committed = IndexSummary()  # the writer thread's counts, merged at the end
        started = time.perf_counter()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(unit=" files", desc="indexing", dynamic_ncols=True)
        try:
            with ThreadPoolExecutor(self.config.indexer.hash_threads) as hashers:
                writer = _Writer(lambda batch: self._commit_batch(batch, committed))
                try:
                    chunks = self._prepared_chunks(streams, summary, hashers, bar, committed)
                    self._encode_chunks(chunks, summary, writer)
                except BaseException:
                    writer.close(raise_error=False)  # the first error is the one to see
                    raise
                writer.close()
        finally:
            if bar is not None:
                bar.close()
            self.close()  # the workers: each run starts its own (or uses the early ones)
            summary.encoded += committed.encoded
            summary.reused += committed.reused
        if self._unlinked:
            summary.collected = self.store.collect_orphans(self._unlinked).contents
            self._unlinked = set()
        if summary.changed or self._vectors is None:
            self._follow_store()
        if not self.cancel.is_set():  # later stages: every photo is searchable by now
            from indexer.place_stage import read_places

            summary.places_read = read_places(self.store, self.cancel).read
            from indexer.tag_stage import apply_tags

            apply_tags(self.store, self.encoder, self.cancel)
        if self.config.ocr.active() and not self.cancel.is_set():
            # Second stage: every photo above is searchable by CLIP already.
            from indexer.text_stage import TextStage

            text = TextStage(self.config, self.store, self.cancel).run()
            summary.texts_read, summary.texts_failed = text.read, text.failed
            summary.texts_seconds = text.seconds
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary

    def _prepared_chunks(
        self,
        streams: list[tuple[str | None, Iterator[Seen]]],
        summary: IndexSummary,
        hashers: Executor,
        bar,
        committed: IndexSummary,
    ) -> Iterator[list[_Pending]]:
        """Each chunk's contents to encode, prepared when the decode stream asks for them
        (while the previous chunk's last decodes are still running)."""
        for root, files in streams:
            for chunk in _chunks(files, CHUNK):
                if self.cancel.is_set():
                    break
                yield self._index_chunk(chunk, summary, hashers)
                self._follow_store()
                if bar is not None:
                    bar.update(len(chunk))
                    bar.set_postfix(encoded=committed.encoded, failed=summary.failed)
            if self.cancel.is_set():
                summary.cancelled = True
                return
            if root is not None and os.path.isdir(root):
                summary.removed += self._remove_missing(root)

    def _follow_store(self) -> None:
        """Bring the vector index up to the store, and snapshot it when enough changed.
        Reads only the rows written since it last looked (nothing when none were)."""
        if self._vectors is None:
            self._vectors = index_for(self.store, self.model, self.config).open()
        else:
            self._vectors.refresh()
        self._seed_text_queries()
        self._vectors.persist()

    def _seed_text_queries(self) -> None:
        """Once the library nears an approximate index, store the model's text embeddings
        of reference texts: the index tunes its depth on them (``search.vectors.queries``)."""
        if self._seeded or self.config.index.backend != "faiss":
            return
        if not worth_seeding(self.config.index.kind, self._vectors.count, self.encoder.dim):
            return
        folder = snapshot.folder_for(self.config.data_path, self.model)
        self._seeded = QuerySample(folder, self.model).ensure_seed(self.encoder.encode_texts)

    # -- one chunk -----------------------------------------------------------------------

    def _index_chunk(
        self,
        chunk: list[Seen],
        summary: IndexSummary,
        hashers: Executor,
    ) -> list[_Pending]:
        """One chunk of scanned files: skip the unchanged, hash the rest, reuse stored
        vectors for known contents, record the bad files; the contents left to encode."""
        summary.seen += len(chunk)
        to_hash, stored_content, failures = self._triage(chunk, summary)
        by_hash = self._hash(to_hash, hashers, failures)
        reuse, pending = self._match_contents(by_hash, stored_content)
        if reuse:
            with self.store.session() as s:
                self._upsert_files(s, [(f, cid, STATUS_OK, None) for f, cid in reuse])
            summary.reused += len(reuse)
        self._record_failures(failures, summary)
        return pending

    def _triage(
        self, chunk: list[Seen], summary: IndexSummary
    ) -> tuple[list[Seen], list[tuple[Seen, int]], list[tuple[Seen, str]]]:
        """(files to hash, unchanged files whose stored content lacks this model's vector,
        failures); unchanged files that need nothing are only counted."""
        with self.store.session() as s:
            rows = Store.file_states(s, [seen.path for seen in chunk])
            known_ids = [r.content_id for r in rows.values() if r.content_id is not None]
            with_vector = Store.contents_with_vector(s, self.model, known_ids)
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
                hash_of = Store.content_hashes(s, [cid for _, cid in stored_content])
                for seen, cid in stored_content:
                    by_hash.setdefault(hash_of[cid], []).append(seen)
            known = Store.content_ids_by_hash(s, list(by_hash))
            have = Store.contents_with_vector(s, self.model, list(known.values()))
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
        """Worker processes, started on first need (or early, while the model loaded): a run
        that decodes a handful of files (an incremental run, the watcher) does it in-process
        instead of paying the start."""
        workers = self.config.indexer.worker_count(self.encoder.device)
        if workers == 0 or jobs < SMALL_RUN:
            return self._pool
        if self._pool is None:
            self._pool = decode_pool(workers, self.encoder.device)
        return self._pool

    def _encode_chunks(
        self, chunks: Iterator[list[_Pending]], summary: IndexSummary, writer: _Writer
    ) -> None:
        """Decode and encode every chunk's contents. A chunk with a handful to decode and no
        pool yet is decoded in-process; from the first larger one on, one stream of decodes
        runs through the pool across every later chunk."""
        if self.config.indexer.ray is not None:
            self._encode_on_ray(chain.from_iterable(chunks), summary, writer)
            return
        for first in chunks:
            pool = self._decode_pool(len(first))
            if pool is None:
                self._encode_stream(iter(first), None, summary, writer)
            else:
                rest = chain.from_iterable(chain([first], chunks))
                self._encode_stream(rest, pool, summary, writer)

    def _encode_stream(
        self,
        pending: Iterator[_Pending],
        pool: Executor | None,
        summary: IndexSummary,
        writer: _Writer,
    ) -> None:
        cfg = self.config.indexer
        batch_size = self.config.model.batch_for(self.encoder.device)
        submitted: deque[_Pending] = deque()  # in decode order, matched to the results

        def jobs() -> Iterator[DecodeJob]:
            for p in pending:
                submitted.append(p)
                yield self._decode_job(p)

        window = max(2 * batch_size, 4 * max(1, cfg.worker_count(self.encoder.device)))
        batch: list[tuple[_Pending, Decoded]] = []
        failures: list[tuple[Seen, str]] = []
        with _EncodeAhead(self._encode_batch, writer.put) as encode:
            for result in ordered_map(pool, run_decode_job, jobs(), window):
                item = submitted.popleft()
                if isinstance(result, BadImage):
                    failures.extend((f, str(result)) for f in item.files)
                    continue
                batch.append((item, result))
                if len(batch) == batch_size:
                    encode.put(batch)
                    batch = []
                if len(failures) >= batch_size:
                    self._record_failures(failures, summary)
                    failures = []
            if batch:
                encode.put(batch)
            if pool is not None:
                # Every decode of the run is done: the workers exit while the last batch
                # encodes, not after it (``close`` then finds them gone).
                pool.shutdown(wait=False)
        self._record_failures(failures, summary)

    def _decode_job(self, item: _Pending) -> DecodeJob:
        """What a decode worker (local or on Ray) does for one content: its first file."""
        cfg = self.config.indexer
        return DecodeJob(item.files[0].path, item.hash, self.encoder.spec,
                         cfg.max_image_pixels, cfg.jpeg_draft)

    def _encode_batch(self, batch: list[tuple[_Pending, Decoded]]) -> _Encoded:
        vectors = self.encoder.encode_pixels(np.stack([d.pixels for _, d in batch]))
        return _Encoded.of(batch, vectors)

    def _encode_on_ray(
        self, pending: Iterator[_Pending], summary: IndexSummary, writer: _Writer
    ) -> None:
        """Decode and encode on a Ray cluster (``indexer.ray``); this process only commits,
        in batches of ``model.batch_size``, as a local run does."""
        from indexer.ray_encode import connect, encode_on_ray

        cfg = self.config.indexer
        connect(cfg.ray)
        batch_size = self.config.model.batch_for(self.encoder.device)
        waiting: dict[int, _Pending] = {}

        def jobs() -> Iterator[tuple[int, DecodeJob]]:
            for key, p in enumerate(pending):
                waiting[key] = p
                yield key, self._decode_job(p)

        done: list[tuple[_Pending, Decoded, np.ndarray]] = []
        failures: list[tuple[Seen, str]] = []

        def flush() -> None:
            writer.put(_Encoded.of([(i, d) for i, d, _ in done],
                                   np.stack([v for _, _, v in done])))
            done.clear()

        # The actors load this run's model (which may not be the configured one).
        model = self.config.model.model_copy(update={"name": self.encoder.model_id})
        for key, result in encode_on_ray(jobs(), model, batch_size=batch_size,
                                         workers=cfg.ray_workers,
                                         cache_dir=str(self.config.data_path)):
            item = waiting.pop(key)
            if result.error is not None:
                failures.extend((f, result.error) for f in item.files)
                continue
            done.append((item, result.decoded, result.vector))
            if len(done) == batch_size:
                flush()
        if done:
            flush()
        self._record_failures(failures, summary)

    def _commit_batch(self, batch: _Encoded, summary: IndexSummary) -> None:
        """One transaction: the batch's new contents, their vectors and their files (the
        writer thread; its own session). Hashes are resolved again here: a content the
        previous chunk committed meanwhile, or twice in this batch, is reused, not doubled."""
        with self.store.session() as s:
            known = Store.content_ids_by_hash(s, [item.hash for item in batch.items])
            have = Store.contents_with_vector(s, self.model, list(known.values()))
            new_rows = {}  # by hash: a content twice in the batch is inserted once
            for item, row in zip(batch.items, batch.contents, strict=True):
                if item.hash not in known:
                    new_rows.setdefault(item.hash, row)
            known.update(zip(new_rows, self.store.insert_contents(s, list(new_rows.values())),
                             strict=True))
            cids, encoded = [], []
            for i, item in enumerate(batch.items):
                cid = known[item.hash]
                cids.append(cid)
                if cid not in have:  # the first of its content: its vector is stored
                    have.add(cid)
                    encoded.append(i)
            self.store.insert_embeddings(
                s, self.model, [cids[i] for i in encoded], batch.vectors[encoded]
            )
            self._upsert_files(s, [
                (f, cid, STATUS_OK, None)
                for item, cid in zip(batch.items, cids, strict=True)
                for f in item.files
            ])
        summary.encoded += len(encoded)
        summary.reused += sum(len(item.files) for item in batch.items) - len(encoded)
        self.batches_committed += 1

    # -- file rows -----------------------------------------------------------------------

    def _upsert_files(self, s, items: list[tuple[Seen, int | None, str, str | None]]) -> None:
        """Write file rows; contents they no longer show are candidates for collection."""
        self._unlinked.update(Store.upsert_files(s, items))

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
                rows = Store.files_under(s, prefix, last, 1000)
                if not rows:
                    return removed
                last = rows[-1].path
                gone = [r for r in rows if not self.scanner.wants(r.path, root)]
                if gone:
                    Store.delete_files(s, [r.id for r in gone])
                    self._unlinked.update(r.content_id for r in gone if r.content_id is not None)
                    removed += len(gone)


def _content_row(item: _Pending, dec: Decoded) -> dict:
    """The ``Content`` row of a newly decoded content."""
    return {"hash": item.hash, "size": item.files[0].size, "width": dec.width,
            "height": dec.height, "format": dec.format, "taken_at": dec.taken_at,
            "camera": dec.camera}


def _safe_hash(path: str) -> str | BadImage:
    """The content hash, or why the file cannot be read (a value: the thread map goes on)."""
    try:
        return content_hash(path)
    except OSError as exc:
        return BadImage.unreadable(exc)


def _chunks(items: Iterator[Seen], size: int) -> Iterator[list[Seen]]:
    while chunk := list(islice(items, size)):
        yield chunk
