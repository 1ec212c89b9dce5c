"""The FAISS index: a cache of one model's vectors, keyed by content id (DESIGN invariant 1).

The store is the truth. The index file records which store state it reflects: the model,
the highest embedding id it holds and how many vectors. Opening it catches up by adding the
embeddings written since; if the store lost vectors, or the file is missing, unreadable or
from another model, it is rebuilt from the store. Deleting the file loses nothing.

The metadata and the FAISS bytes live in one file, replaced atomically, so a crash while
saving leaves either the old file or the new one, never a mismatched pair.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import faiss
import numpy as np

from search.config import Config
from search.store import Store

log = logging.getLogger(__name__)
FORMAT = 1


def _gpu_count() -> int:
    # faiss-cpu has no get_num_gpus in some builds.
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def index_path(folder: Path, model_id: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-")[-60:]
    digest = hashlib.sha1(model_id.encode()).hexdigest()[:8]
    return folder / f"index-{slug}-{digest}.faiss"


class VectorIndex:
    """Inner-product search over L2-normalised vectors: the score is the cosine similarity."""

    def __init__(
        self, store: Store, model_id: str, folder: Path, kind: str = "flat", use_gpu: bool = True
    ) -> None:
        self.store = store
        self.model_id = model_id
        self.kind = kind
        self.use_gpu = use_gpu
        self.path = index_path(Path(folder), model_id)
        self.index: faiss.Index | None = None
        self.dim = 0
        self.max_id = 0
        self.count = 0
        self._gpu_index: faiss.Index | None = None
        self._gpu_res = None
        self.rebuilt = False

    @classmethod
    def for_config(cls, store: Store, model_id: str, config: Config) -> VectorIndex:
        """The index of ``model_id`` where ``config`` keeps it, with its kind and GPU use."""
        idx = config.index
        return cls(store, model_id, config.data_path, idx.kind, idx.use_gpu)

    # -- building -------------------------------------------------------------------------

    def _new(self, dim: int) -> faiss.Index:
        if self.kind == "fp16":
            inner = faiss.IndexScalarQuantizer(
                dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
        else:
            inner = faiss.IndexFlatIP(dim)
        return faiss.IndexIDMap2(inner)

    def _add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if self.index is None:
            self.dim = vecs.shape[1]
            self.index = self._new(self.dim)
        self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), ids)
        self.count += len(ids)
        self._gpu_index = None

    def _read_meta(self, fh) -> dict | None:  # noqa: ANN001
        """The header line, if the file is for this model and these settings."""
        try:
            meta = json.loads(fh.readline())
        except ValueError:
            return None
        if not isinstance(meta, dict) or (
            meta.get("format"), meta.get("model"), meta.get("kind")
        ) != (FORMAT, self.model_id, self.kind):
            return None
        return meta

    def _load(self) -> bool:
        """Read the file; False when it is missing, broken or for other settings."""
        try:
            with open(self.path, "rb") as fh:
                meta = self._read_meta(fh)
                if meta is None:
                    return False
                body = fh.read()
            index = faiss.deserialize_index(np.frombuffer(body, dtype=np.uint8))
            if index.ntotal != meta["count"]:
                return False
        except (OSError, ValueError, KeyError, RuntimeError):
            return False
        self.index, self.dim = index, index.d
        self.max_id, self.count = int(meta["max_id"]), int(meta["count"])
        return True

    def open(self) -> VectorIndex:
        """Load the cache and bring it up to the store's state, rebuilding if it cannot."""
        db_max, db_count = self.store.embedding_state(self.model_id)
        loaded = self._load()
        if loaded and self.max_id <= db_max:
            for ids, vecs, last in self.store.iter_embeddings(self.model_id, after_id=self.max_id):
                self._add(ids, vecs)
                self.max_id = last
            if self.count == db_count:
                if self.count and db_max != self.max_id:
                    log.info("vector index caught up to embedding %d", db_max)
                return self
        if loaded or self.path.exists():
            log.info("vector index out of step with the store; rebuilding %s", self.path.name)
        return self.rebuild()

    def rebuild(self) -> VectorIndex:
        self.index, self.dim, self.max_id, self.count = None, 0, 0, 0
        self._gpu_index = None
        for ids, vecs, last in self.store.iter_embeddings(self.model_id):
            self._add(ids, vecs)
            self.max_id = last
        self.rebuilt = True
        return self

    def save(self) -> None:
        if self.index is None:
            self.path.unlink(missing_ok=True)
            return
        meta = {
            "format": FORMAT,
            "model": self.model_id,
            "kind": self.kind,
            "dim": self.dim,
            "max_id": self.max_id,
            "count": self.count,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(meta).encode() + b"\n")
            fh.write(faiss.serialize_index(self.index).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def is_current(self) -> bool:
        """Whether the saved file reflects the store now (what ``pixseek status`` reports)."""
        state = self.store.embedding_state(self.model_id)
        if state == (0, 0):
            return True  # nothing to index: no file is needed
        # The header alone: reading a million vectors to answer yes or no would be waste.
        try:
            with open(self.path, "rb") as fh:
                meta = self._read_meta(fh)
        except OSError:
            return False
        return meta is not None and (meta.get("max_id"), meta.get("count")) == state

    # -- searching ------------------------------------------------------------------------

    def _searcher(self) -> faiss.Index:
        assert self.index is not None
        if self.use_gpu and self._gpu_index is None and _gpu_count() > 0:
            # faiss-gpu: search on the GPU, keep the CPU copy as the one saved. The resources
            # object must outlive the GPU index, so it is kept beside it.
            try:
                self._gpu_res = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self.index)
            except (RuntimeError, AttributeError) as exc:
                log.warning("searching on the CPU: this index cannot move to the GPU (%s)", exc)
                self.use_gpu = False
        return self._gpu_index or self.index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, content ids) per query row; ids are -1 past the last vector."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.index is None or self.count == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if q.shape[1] != self.dim:
            raise ValueError(f"query has {q.shape[1]} dimensions, the index {self.dim}")
        return self._searcher().search(q, min(k, self.count))
