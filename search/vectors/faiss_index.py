"""The FAISS vector index: a memory-mapped snapshot, plus the store's changes since it.

- The **snapshot** is an immutable FAISS file (``snapshot.py``) reflecting the store at its
  marks. Opening maps it: milliseconds, whatever the library size.
- **Added** vectors since the snapshot are read from the store (which is an append-only log
  of embeddings) into a small in-memory ``Delta``, searched exactly beside the snapshot.
- **Removed** vectors since the snapshot come from the store's removal log; those inside the
  snapshot are masked by an id selector, so they are never scanned or returned.
- ``persist`` folds delta and removals into a new snapshot only when they have grown past a
  share of it (``MERGE_FRACTION``, at least ``MERGE_MIN``, at most ``MERGE_MAX``): adding a
  photo costs the change, and a rewrite is amortised over thousands of them.

Nothing here is the truth: a snapshot that is missing, torn, damaged (its block checksums
differ, or a search returns a score no unit vectors can have), for other settings or out of
step with the store is rebuilt from the store, and deleting the folder loses nothing. Until
a damaged one is rebuilt, searches read the store's vectors exactly. A reader that cannot
write the folder (a read-only or full disk) builds the index in memory and serves that.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from search.errors import InputError, StorageError
from search.faiss_lib import faiss
from search.store import Removal, Store
from search.vectors import gpu, kinds, snapshot
from search.vectors.delta import Delta, merge_results
from search.vectors.interface import Marks, VectorIndex
from search.vectors.queries import QuerySample
from search.vectors.snapshot import Manifest, Snapshot

log = logging.getLogger(__name__)

MERGE_MIN = 1024  # below this many changes a snapshot is not worth writing
MERGE_FRACTION = 0.1
MERGE_MAX = 16_384  # bounds what an open reads from the store and a query scans exactly
# HNSW cannot delete: past this share of masked vectors the graph is rebuilt without them.
HNSW_MASKED_MAX = 0.1
TUNE_K = 10
# A filter this selective is searched exactly: the allowed vectors are few, and the cells
# an approximate search visits might hold too few of them to rank well.
FILTER_EXACT_SHARE = 0.01
RETUNE_MIN = 256  # new vectors in a merge worth re-checking the search depth for
# Integrity at query time: unit vectors score within [-1, 1] (fp16 storage adds ~1e-3), and
# the first results' scores match the store's vectors within fp16 rounding.
SCORE_LIMIT = 1.001
EXACT_CHUNK = 2048  # store rows per step of an exact search over the store
SPOT_CHECK = 8
SPOT_TOLERANCE = 0.01


class FaissIndex(VectorIndex):
    """One model's vectors under ``<data_dir>/index-<model>/``; see the module docstring."""

    def __init__(
        self,
        store: Store,
        model_id: str,
        data_dir: Path,
        kind: str = "auto",
        use_gpu: bool = True,
        verify: bool = True,
    ) -> None:
        super().__init__(store, model_id)
        self.verify = verify
        if kind not in kinds.KINDS:
            raise InputError(f"unknown index kind {kind!r}; use one of {', '.join(kinds.KINDS)}")
        self.requested = kind
        self.use_gpu = use_gpu
        self.folder = snapshot.folder_for(Path(data_dir), model_id)
        self.snap: Snapshot | None = None
        self.delta = Delta()
        self.tombstones: set[int] = set()  # content ids masked inside the snapshot
        self.removed_since_snapshot = 0
        self.dim = 0
        self.rebuilt = False  # whether the last open had to rebuild from the store
        self.in_memory = False  # the snapshot could not be written: it lives in this process
        self.damaged: str | None = None  # why the snapshot on disk cannot be trusted
        self._checked = False  # the mapped snapshot's checksums were verified
        self._repairing: threading.Thread | None = None
        self._selector_cache: tuple[int, object] | None = None
        # Kept across snapshots: a new snapshot is brought in by adding its new vectors.
        self._gpu: gpu.GpuCopy | None = None
        self.searches = 0  # snapshot searches by this process: when a GPU copy pays
        self.gpu_clones = 0  # full copies to the GPU made (the rest were incremental)

    # -- opening ----------------------------------------------------------------------------

    def _reset(self) -> None:
        self.snap, self.delta, self.tombstones = None, Delta(), set()
        self.removed_since_snapshot, self.dim, self.marks = 0, 0, Marks()
        self._selector_cache = None  # the GPU copy stays: _gpu_index brings it up to date

    def _adopt(self, snap: Snapshot, checked: bool = False) -> None:
        m = snap.manifest
        self.snap, self.dim = snap, m.dim
        self._checked = checked
        self.tombstones = set(m.extra.get("masked", []))
        self.marks = Marks(m.embedding_mark, m.removal_mark)

    def open(self) -> FaissIndex:
        """Map the snapshot and catch up with the store. A ``verify``-ing index (a writer's)
        also checks its count against the store's, which catches deletions made behind
        pixseek's back; that scan costs a second on a cold 1M-photo database, so readers
        skip it and leave it to the next indexing run."""
        self._reset()
        self.rebuilt = False
        judged = snapshot.manifest_stamp(self.folder)
        snap = snapshot.load(self.folder, self.model_id)
        if snap is not None and not self._usable(snap.manifest):
            snap = None
        if snap is None:
            if judged is not None or self.store.embedding_count(self.model_id) >= MERGE_MIN:
                return self._rebuild_unless_replaced(judged)
            self.catch_up()  # a small library needs no snapshot: the store is enough
            return self
        self._adopt(snap)
        if not self.verify:
            self.catch_up()
            return self
        embedding, removal, count = self.store.embedding_state(self.model_id)
        self.catch_up(Marks(embedding, removal))
        if self.count != count:
            log.warning(
                "vector index holds %d vectors, the database %d; rebuilding", self.count, count
            )
            return self._rebuild_unless_replaced(judged)
        return self

    def _usable(self, m: Manifest) -> bool:
        if m.requested != self.requested:
            log.info("index kind changed to %s; rebuilding", self.requested)
            return False
        if Marks(m.embedding_mark, m.removal_mark).ahead_of(self.store_marks()):
            log.warning("the vector index is newer than the database; rebuilding")
            return False
        return True

    def _rebuild_unless_replaced(self, judged: tuple[int, int, int] | None) -> FaissIndex:
        """Rebuild, unless another process wrote a new snapshot since we judged the one we
        found (two processes opening a broken index build it once)."""
        with snapshot.writer_lock(self.folder):
            if snapshot.manifest_stamp(self.folder) != judged:
                return self.open()
            return self.rebuild()

    def refresh(self) -> bool:
        """Follow the store and other processes' snapshots; cheap when nothing changed (one
        stat and two index seeks). What a long-running server calls before each query."""
        if self.damaged:
            return False  # the repair catches up with the store when it is done
        loaded = self.snap.stamp if self.snap else None
        if snapshot.manifest_stamp(self.folder) != loaded:
            self.open()  # a writer folded the changes into a new snapshot: map that one
            return True
        now = self.store_marks()
        if self.marks.ahead_of(now):
            self.open()
            return True
        return self.catch_up(now)

    # -- changes ---------------------------------------------------------------------------

    def add(self, embedding_ids: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self.dim == 0:
            self.dim = int(vectors.shape[1])
        self.delta.add(np.asarray(embedding_ids, np.int64), np.asarray(ids, np.int64), vectors)

    def remove(self, removals: list[Removal]) -> None:
        snap_mark = self.snap.manifest.embedding_mark if self.snap else 0
        in_snapshot = {r.content_id for r in removals if r.embedding_id <= snap_mark}
        self.delta.drop([r.embedding_id for r in removals if r.embedding_id > snap_mark])
        if in_snapshot:
            before = len(self.tombstones)
            self.tombstones |= in_snapshot
            self.removed_since_snapshot += len(self.tombstones) - before
            self._selector_cache = None

    @property
    def count(self) -> int:
        in_snapshot = self.snap.index.ntotal if self.snap else 0
        return in_snapshot - len(self.tombstones) + len(self.delta)

    # -- searching -------------------------------------------------------------------------

    def search(
        self,
        queries: np.ndarray,
        k: int,
        ids: np.ndarray | None = None,
        exact: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if k <= 0:
            raise InputError("k must be a positive number of results")
        if self.count == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if q.shape[1] != self.dim:
            raise InputError(
                f"the query has {q.shape[1]} dimensions; the index of {self.model_id} has "
                f"{self.dim}"
            )
        allowed = None if ids is None else np.unique(np.asarray(ids, np.int64))
        k = min(k, self.count)
        if self.snap is not None and not self._checked and not self.damaged:
            self._check_integrity()
        if self.damaged:  # until the repair is done: the truth, exactly
            return self._exact_from_store(q, k, allowed)
        parts = []
        if self.snap is not None and self.snap.index.ntotal > len(self.tombstones):
            found = self._search_snapshot(q, k, allowed, exact)
            reason = self._implausible(q, *found)
            if reason:
                self._on_damage(reason)
                return self._exact_from_store(q, k, allowed)
            parts.append(found)
        if len(self.delta):
            parts.append(self.delta.search(q, k, allowed))
        if not parts:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        return merge_results(parts, k)

    def scan(self, queries: np.ndarray, k: int, depth: int) -> tuple | None:
        """The snapshot searched at ``depth``, removed photos masked, plus the exact search of
        its recent additions; None while it is damaged, or when it is exact or empty."""
        if self.damaged or self.snap is None:
            return None
        kind, index = self.snap.manifest.kind, self.snap.index
        if kind not in kinds.APPROXIMATE or index.ntotal <= len(self.tombstones):
            return None
        depth = max(depth, k) if kind == "hnsw" else min(depth, kinds.max_depth(kind, index))
        selector, _alive = self._selector(None)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        parts = [index.search(q, k, params=kinds.params(kind, depth, selector))]
        if len(self.delta):
            parts.append(self.delta.search(q, k, None))
        return merge_results(parts, k)

    # -- integrity -------------------------------------------------------------------------

    def _check_integrity(self) -> None:
        """Verify the mapped snapshot's block checksums, once per snapshot and process."""
        assert self.snap is not None
        self._checked = True
        reason = snapshot.verify(self.folder, self.snap.manifest)
        if reason:
            self._on_damage(reason)

    def _implausible(self, q: np.ndarray, scores: np.ndarray, found: np.ndarray) -> str | None:
        """What no healthy snapshot returns: a cosine of unit vectors outside [-1, 1], or a
        score that disagrees with the store's vector of the photo it names (checked on the
        first few results, which the engine reads from the store anyway)."""
        live = scores[found >= 0]
        if len(live) and (np.abs(live).max() > SCORE_LIMIT or not np.isfinite(live).all()):
            return f"a search scored {float(np.abs(live).max()):.3f}"
        assert self.snap is not None
        if kinds.reranks(self.snap.manifest.kind):
            return None  # its scores were just computed from the store's vectors
        head = found[:, :SPOT_CHECK]
        stored = self.store.vectors(self.model_id, np.unique(head[head >= 0]).tolist())
        for row in range(len(q)):
            for cid, score in zip(head[row], scores[row, :SPOT_CHECK], strict=False):
                vector = stored.get(int(cid))
                truth = float(vector @ q[row]) if vector is not None else score
                if abs(truth - score) > SPOT_TOLERANCE:
                    return f"photo {int(cid)} scored {score:.4f}, its stored vector {truth:.4f}"
        return None

    def _on_damage(self, reason: str) -> None:
        """Stop trusting the snapshot: searches read the store's vectors until a rebuild
        from the store replaces it, which runs beside them (a one-shot command waits for it
        before it exits, after printing its results)."""
        log.warning("the vector index in %s is damaged (%s): searching the database's vectors "
                    "exactly, and rebuilding the index from them", self.folder, reason)
        self.damaged = reason
        self._gpu = None
        self._repairing = threading.Thread(target=self._repair, name="pixseek-index-repair")
        self._repairing.start()

    def _repair(self) -> None:
        try:
            self.rebuild()
            log.warning("the vector index in %s was rebuilt from the database", self.folder)
        except Exception as exc:  # noqa: BLE001 - searches go on over the store's vectors
            log.warning("could not rebuild the vector index in %s: %s", self.folder, exc)
            return
        self.damaged = None

    def wait_for_repair(self, timeout: float | None = None) -> None:
        if self._repairing is not None:
            self._repairing.join(timeout)

    def _selector(self, allowed: np.ndarray | None) -> tuple[object | None, list]:
        """The FAISS id selector for a search, and the objects it borrows (kept alive)."""
        keep: list = []
        mask = None
        if self.tombstones:
            if self._selector_cache is None:
                masked = np.fromiter(self.tombstones, np.int64, len(self.tombstones))
                batch = faiss.IDSelectorBatch(masked)
                self._selector_cache = (batch, faiss.IDSelectorNot(batch))
            mask = self._selector_cache[1]
            keep.append(self._selector_cache)
        if allowed is None:
            return mask, keep
        only = faiss.IDSelectorBatch(allowed)
        keep.append(only)
        if mask is None:
            return only, keep
        both = faiss.IDSelectorAnd(only, mask)
        keep.append(both)
        return both, keep

    def _search_snapshot(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None, exact: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.snap is not None
        m, index = self.snap.manifest, self.snap.index
        selector, _alive = self._selector(allowed)
        if m.kind not in kinds.APPROXIMATE:
            return self._plain_search(index, q, k, kinds.params(m.kind, 0, selector))
        live = index.ntotal - len(self.tombstones)
        if allowed is not None and len(allowed) <= FILTER_EXACT_SHARE * live:
            exact = True
        if exact and kinds.reranks(m.kind):
            return self._exact_from_store(q, k, allowed)
        if exact:
            return kinds.exact_search(m.kind, index, q, k, selector)
        top = kinds.max_depth(m.kind, index)
        depth = m.depth
        if allowed is not None:
            depth = kinds.filtered_depth(depth, top, live, len(allowed))
        wanted = min(k, live if allowed is None else len(allowed))
        fetch = kinds.candidates(m.kind, k)
        while True:
            scores, found = self._plain_search(
                index, q, fetch, kinds.params(m.kind, depth, selector)
            )
            # A filter or many removals can leave the nearest cells short of k matches: look
            # further (x4 each time) until every query has k, or the whole index was seen.
            if depth >= top or (found >= 0).sum(axis=1).min() >= wanted:
                if depth >= top and m.kind == "hnsw" and (found >= 0).sum(axis=1).min() < wanted:
                    return kinds.exact_search(m.kind, index, q, k, selector)
                break
            depth = min(top, depth * 4)
        if kinds.reranks(m.kind):
            return self._rerank(q, found, k)
        return scores, found

    def _rerank(
        self, q: np.ndarray, found: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores for the candidates, from the store's vectors (the codes only chose
        them); a candidate the store no longer holds was removed and is dropped."""
        stored = self.store.vectors(self.model_id, np.unique(found[found >= 0]).tolist())
        rows = []
        for row in range(len(q)):
            have = np.asarray([c for c in found[row].tolist() if c in stored], np.int64)
            top = kinds.TopK(1, k)
            if len(have):
                matrix = np.stack([stored[int(c)] for c in have]).astype(np.float32)
                top.add((matrix @ q[row])[None], have)
            rows.append(top.result())
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])

    def _exact_from_store(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the store's float32 vectors: the allowed ones, or all of them
        streamed in chunks (the index's codes are approximate). The store is the truth, so
        this also covers what the delta holds; the merge counts a photo once."""
        if allowed is not None:
            stored = self.store.vectors(self.model_id, allowed.tolist())
            chunks = [(np.fromiter(stored, np.int64, len(stored)),
                       np.stack(list(stored.values())) if stored else np.zeros((0, self.dim)))]
        else:
            # Small chunks: each server thread's allocator keeps what a chunk took, and an
            # exact search may run on any of them (16k rows took serve to 1.27 GB at 1M).
            chunks = ((ids, vecs) for _e, ids, vecs in self.store.iter_embeddings(
                self.model_id, chunk=EXACT_CHUNK))
        return kinds.exact_top(q, chunks, k)

    def _plain_search(
        self, index: faiss.Index, q: np.ndarray, k: int, params: faiss.SearchParameters | None
    ) -> tuple[np.ndarray, np.ndarray]:
        self.searches += 1
        gpu_copy = self._gpu_index() if gpu.gpu_can_search(k, params) else None
        if gpu_copy is not None:
            try:
                return gpu_copy.search(q, k)
            except (RuntimeError, AttributeError) as exc:
                log.warning("searching on the CPU: the GPU search failed (%s)", exc)
                self.use_gpu = False
                self._gpu = None
        return index.search(q, k, params=params)

    def _gpu_index(self) -> faiss.Index | None:
        """The GPU copy of a flat snapshot, when faiss-gpu, a GPU and enough use make it pay
        (``gpu_pays``); brought up to date with a new snapshot by adding its new vectors."""
        if not self.use_gpu or self.snap is None:
            return None
        m = self.snap.manifest
        copy = self._gpu
        if copy is not None and copy.stamp == self.snap.stamp:
            return copy.index
        if m.kind not in gpu.GPU_KINDS:
            self._gpu = None
            return None
        if copy is not None and copy.catch_up(self.snap, self.store, self.model_id):
            return copy.index
        self._gpu = None
        if not gpu.gpu_pays(m.kind, self.snap.index.ntotal, self.searches) or gpu.GPU.count() == 0:
            return None
        try:
            gpu_index = gpu.GPU.clone(self.snap.index)
        except (RuntimeError, AttributeError, MemoryError) as exc:
            log.warning("searching on the CPU: this index cannot move to the GPU (%s)", exc)
            self.use_gpu = False
            gpu.GPU.release_if_unused()  # a failed copy must not keep the GPU memory
            return None
        self.gpu_clones += 1
        self._gpu = gpu.GpuCopy(gpu_index, m.kind, m.dim,
                            Marks(m.embedding_mark, m.removal_mark), self.snap.stamp)
        gpu.GPU.holders.add(self)
        return gpu_index

    # -- persisting ------------------------------------------------------------------------

    def merge_due(self) -> bool:
        changes = len(self.delta) + self.removed_since_snapshot
        if changes == 0:
            return False
        base = self.snap.manifest.count if self.snap else 0
        limit = min(MERGE_MAX, max(MERGE_MIN, MERGE_FRACTION * base))
        return changes >= limit

    def persist(self, force: bool = False) -> bool:
        """Fold the changes into a new snapshot when they are worth a rewrite (or ``force``).
        A reader keeps its mapped snapshot until it next refreshes; nothing is lost either
        way, the store holds every change."""
        if not (force or self.merge_due()):
            return self._retune_if_stale()
        with snapshot.writer_lock(self.folder):
            if snapshot.manifest_stamp(self.folder) != (self.snap.stamp if self.snap else None):
                self.open()  # another process wrote a snapshot meanwhile: start from it
                if not (force or self.merge_due()):
                    return False
            self.catch_up()
            if self.count == 0 or (self.count < MERGE_MIN and not force and self.snap is None):
                return False
            if self._needs_full_build():
                self._build_locked()
            else:
                self._merge_locked()
        return True

    def _needs_full_build(self) -> bool:
        if self.snap is None:
            return True
        m = self.snap.manifest
        if kinds.choose(self.requested, self.count, self.dim, current=m.kind) != m.kind:
            return True
        if kinds.needs_rebuild(m.kind, m.trained_count, self.count):
            return True
        if not kinds.supports_remove(m.kind):
            delta_ids, _ = self.delta.arrays()
            if self.tombstones & set(delta_ids.tolist()):
                return True  # a reused id would be masked in its new place too
            if len(self.tombstones) > HNSW_MASKED_MAX * m.count:
                return True
        return False

    def _merge_locked(self) -> None:
        """Read the snapshot into memory, apply removals and additions, write it anew."""
        assert self.snap is not None
        m = self.snap.manifest
        reason = snapshot.verify(self.folder, m)
        if reason:  # never copy damage into the next snapshot: build it from the store
            log.warning("the vector index in %s is damaged (%s): rebuilding it from the "
                        "database", self.folder, reason)
            self._build_locked()
            return
        index = snapshot.load_writable(self.folder, m)
        masked = sorted(self.tombstones)
        if masked and kinds.supports_remove(m.kind):
            index.remove_ids(faiss.IDSelectorBatch(np.asarray(masked, np.int64)))
            masked = []
        ids, vectors = self.delta.arrays()
        if len(ids):
            index.add_with_ids(vectors, ids)
        tuning = {"depth": m.depth, "recall": m.recall, "tuned_on": m.extra.get("tuned_on", {})}
        if m.kind in kinds.APPROXIMATE and (
            len(ids) >= RETUNE_MIN or self._sample_changed(m, merging=True)
        ):
            # New photos may be a new kind of photo the cells were not trained on, and new
            # served queries may ask what the last tuning never saw: measure again.
            tuning = self._measure(m.kind, index, None, self.marks.embedding, floor=m.depth)
        manifest = replace(
            m,
            count=int(index.ntotal),
            embedding_mark=self.marks.embedding,
            removal_mark=self.marks.removal,
            depth=tuning["depth"],
            tuned_recall=min(tuning["recall"].values(), default=None),
            recall=tuning["recall"],
            extra={**m.extra, "masked": masked, "tuned_on": tuning["tuned_on"]},
        )
        self._write(index, manifest)

    def rebuild(self) -> FaissIndex:
        """Build the index from the store alone (nothing of the old snapshot is trusted).
        The old snapshot stays in place until the new one replaces it, so a server that
        maps it keeps answering meanwhile."""
        with snapshot.writer_lock(self.folder):
            self._reset()
            self._gpu = None  # nothing old is trusted, the GPU copy neither
            self._build_locked()
        self.rebuilt = True
        return self

    def _build_locked(self) -> None:
        """A new snapshot from the store: sample, train, add, tune, write, then map it."""
        embedding, removal, count = self.store.embedding_state(self.model_id)
        upto = Marks(embedding, removal)
        if count == 0:
            snapshot.clear(self.folder)
            self._reset()
            self.marks = upto
            return
        current = self.snap.manifest.kind if self.snap else None
        dim = self._dim_in_store()
        kind = kinds.choose(self.requested, count, dim, current=current)
        rng = np.random.default_rng(0)
        # Pass 1: a uniform sample of the library, for training and for tuning queries.
        n_train = kinds.train_size(kind, count)
        n_sample = max(n_train, kinds.TUNE_QUERIES) if kind in kinds.APPROXIMATE else 0
        sample = self._sample(upto, count, n_sample, rng) if n_sample else None
        index = kinds.new_index(kind, dim, count, sample[:n_train] if n_train else None)
        # Pass 2: every vector into the index.
        added = 0
        for _emb_ids, ids, vectors in self.store.iter_embeddings(
            self.model_id, upto_id=upto.embedding
        ):
            index.add_with_ids(vectors, ids)
            added += len(ids)
        # Removals that landed while we read: out of the new index before anyone sees it.
        removals = self.store.removals_since(self.model_id, removal)
        gone = [r.content_id for r in removals if r.embedding_id <= upto.embedding]
        masked: list[int] = []
        if gone and kinds.supports_remove(kind):
            index.remove_ids(faiss.IDSelectorBatch(np.asarray(gone, np.int64)))
        else:
            masked = sorted(set(gone))
        tuning: dict = {"depth": 0, "recall": {}, "tuned_on": {}}
        if kind in kinds.APPROXIMATE and index.ntotal:
            assert sample is not None
            photos = sample[rng.permutation(len(sample))[:kinds.TUNE_QUERIES]]
            tuning = self._measure(kind, index, photos, upto.embedding)
        manifest = Manifest(
            model=self.model_id, requested=self.requested, kind=kind, dim=dim,
            count=int(index.ntotal),
            embedding_mark=upto.embedding,
            removal_mark=removals[-1].id if removals else upto.removal,
            file="", bytes=0, generation=self.snap.manifest.generation if self.snap else 0,
            trained_count=count if n_train else 0, depth=tuning["depth"],
            tuned_recall=min(tuning["recall"].values(), default=None), recall=tuning["recall"],
            extra={"masked": masked, "tuned_on": tuning["tuned_on"]},
        )
        log.info("built a %s index of %d vectors (depth %d, recall %s)", kind, added,
                 tuning["depth"], tuning["recall"])
        self._write(index, manifest)

    def _write(self, index: faiss.Index, manifest: Manifest) -> None:
        """Write the snapshot, drop the in-memory copy, map the file, catch up the rest.
        A reader on a read-only or full disk keeps the index in memory instead (a writer
        says why it cannot go on)."""
        try:
            snapshot.write(self.folder, index, manifest)
        except StorageError as exc:
            if self.verify:
                raise
            log.warning("searching an index built in memory: %s", exc)
            stamp = snapshot.manifest_stamp(self.folder)  # refresh follows a real writer's
            self._reset()
            self._adopt(Snapshot(manifest, index, stamp), checked=True)
            self.in_memory = True
            self.catch_up()
            return
        self.in_memory = False
        del index
        snap = snapshot.load(self.folder, self.model_id)
        if snap is None:
            raise RuntimeError(f"the vector index just written to {self.folder} cannot be read")
        self._reset()
        self._adopt(snap, checked=True)  # the checksums were just taken from this file
        self.catch_up()

    def _dim_in_store(self) -> int:
        for _emb_ids, _ids, vectors in self.store.iter_embeddings(self.model_id, chunk=1):
            return int(vectors.shape[1])
        return 0

    def _sample(
        self, upto: Marks, count: int, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        """``n`` vectors at uniformly random positions of the library, in one streaming pass."""
        picks = np.sort(rng.choice(count, size=min(n, count), replace=False))
        out, seen = [], 0
        for _emb_ids, _ids, vectors in self.store.iter_embeddings(
            self.model_id, upto_id=upto.embedding
        ):
            lo = np.searchsorted(picks, seen)
            hi = np.searchsorted(picks, seen + len(vectors))
            out.append(vectors[picks[lo:hi] - seen])
            seen += len(vectors)
        sample = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
        return np.ascontiguousarray(sample, np.float32)

    # -- tuning ----------------------------------------------------------------------------

    def _measure(
        self, kind: str, index: faiss.Index, library: np.ndarray | None, upto: int,
        floor: int = 0,
    ) -> dict:
        """Tune ``index``'s depth on the queries this engine serves (``queries``): text
        (the model's text embeddings and served text queries), image (served image queries
        and library photos) and text under an id filter. Exact neighbours come from one
        pass over the store's vectors up to embedding ``upto``."""
        sample = QuerySample(self.folder, self.model_id)
        sets = {name: v[: kinds.MAX_SET] for name, v in sample.sets().items()}
        if library is None:
            library = self.store.sample_vectors(self.model_id, kinds.TUNE_QUERIES)
        if len(library):
            sets["image"] = np.concatenate([sets.get("image", library[:0]), library])
        sets = {name: np.ascontiguousarray(v, np.float32) for name, v in sets.items() if len(v)}
        filter_by = "text" if "text" in sets else "image"
        tops = {name: kinds.TopK(len(v), TUNE_K) for name, v in sets.items()}
        # An even spread of the set, so both halves keep their share.
        pick = np.linspace(0, len(sets[filter_by]) - 1,
                           min(kinds.MAX_FILTERED, len(sets[filter_by]))).astype(int)
        filtered = kinds.TopK(len(pick), TUNE_K)
        allowed = []
        for _emb, ids, vectors in self.store.iter_embeddings(
            self.model_id, upto_id=upto, chunk=8192
        ):
            for name, queries in sets.items():
                scores = queries @ vectors.T
                tops[name].add(scores, ids)
                if name == filter_by:
                    keep = np.isin(ids, kinds.filter_ids(ids))
                    filtered.add(np.where(keep, scores[pick], -np.inf), ids)
                    allowed.append(ids[keep])
        qsets = {name: kinds.QuerySet(v, tops[name].result()[1]) for name, v in sets.items()}
        qsets["filtered"] = kinds.QuerySet(
            sets[filter_by][pick], filtered.result()[1],
            np.concatenate(allowed) if allowed else np.zeros(0, np.int64),
        )
        depth, recall = kinds.tune(kind, index, qsets, TUNE_K, int(index.ntotal), floor)
        tuned_on = {"queries": {name: len(v.queries) for name, v in qsets.items()},
                    "seed": sample.seed() is not None, "served": sample.served_counts()}
        return {"depth": depth, "recall": recall, "tuned_on": tuned_on}

    def _sample_changed(self, m: Manifest, merging: bool = False) -> bool:
        """Whether the query sample grew enough since ``m`` was tuned to tune again: a seed
        of text queries appeared, or (when ``merging``: a merge already pays for a pass
        over the store; adding one photo must not) a kind's served queries doubled, with
        at least 64 more."""
        tuned_on = m.extra.get("tuned_on", {})
        sample = QuerySample(self.folder, self.model_id)
        if not tuned_on.get("seed") and sample.seed() is not None:
            return True
        if not merging:
            return False
        before = tuned_on.get("served", {})
        for kind, seen in sample.served_counts().items():
            old = before.get(kind, 0)
            if seen >= max(2 * old, old + 64):
                return True
        return False

    def _retune_if_stale(self) -> bool:
        """Measure the snapshot's depth again when it was tuned without the model's text
        queries and they are there now: a new manifest, the same file."""
        if self.snap is None or self.snap.manifest.kind not in kinds.APPROXIMATE:
            return False
        if not self._sample_changed(self.snap.manifest):
            return False
        with snapshot.writer_lock(self.folder):
            if snapshot.manifest_stamp(self.folder) != self.snap.stamp:
                self.open()
                if self.snap is None or self.snap.manifest.kind not in kinds.APPROXIMATE:
                    return False
            m = self.snap.manifest
            tuning = self._measure(m.kind, self.snap.index, None, m.embedding_mark)
            log.info("search depth re-tuned on the query sample: %s %d, recall %s",
                     kinds.depth_name(m.kind), tuning["depth"], tuning["recall"])
            snapshot.write_manifest(self.folder, replace(
                m, depth=tuning["depth"], recall=tuning["recall"],
                tuned_recall=min(tuning["recall"].values(), default=None),
                extra={**m.extra, "tuned_on": tuning["tuned_on"]},
            ))
            self.open()
        return True

    # -- reporting -------------------------------------------------------------------------

    def is_current(self) -> bool:
        """Whether the next open needs no rebuild (cheap: the manifest and a file size)."""
        m = snapshot.read_manifest(self.folder)
        if m is None:
            return self.store.embedding_count(self.model_id) < MERGE_MIN
        try:
            size = (self.folder / m.file).stat().st_size
        except OSError:
            return False
        if size != m.bytes or m.model != self.model_id or m.requested != self.requested:
            return False
        return not Marks(m.embedding_mark, m.removal_mark).ahead_of(self.store_marks())

    def describe(self) -> dict:
        m = snapshot.read_manifest(self.folder)
        if m is None:  # no snapshot: the store's vectors are searched exactly
            return {"kind": "flat", "requested": self.requested, "snapshot_vectors": 0}
        info = {
            "kind": m.kind,
            "requested": self.requested,
            "snapshot_vectors": m.count - len(m.extra.get("masked", [])),
            "bytes": m.bytes,
            "folder": str(self.folder),
        }
        if m.kind in kinds.APPROXIMATE:  # nprobe / efSearch, and the recall it reaches
            info[kinds.depth_name(m.kind)] = m.depth
            info["depth"] = m.depth
            info["tuned_recall"] = m.tuned_recall
            info["recall"] = m.recall  # held-out recall@10 per query kind
            info["recall_queries"] = m.extra.get("tuned_on", {}).get("queries", {})
            info["candidates"] = kinds.candidates(m.kind, TUNE_K)
        return info

