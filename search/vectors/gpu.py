"""FAISS on the GPU: when a copy of a snapshot pays, the process's one set of GPU resources,
and a copy kept up to date by adding the vectors a new snapshot gained."""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from search.faiss_lib import faiss
from search.store import Store
from search.vectors.interface import Marks
from search.vectors.snapshot import Snapshot

log = logging.getLogger(__name__)


# FAISS's GPU k-selection stops at 2048 (GPU_MAX_SELECTION_K; "GPU index only supports
# min/max-K selection up to 2048", facebookresearch/faiss#1384, #2103), while -k goes to
# 10,000 and the engine's refetch asks for 4x that: a larger k searches the CPU index.
GPU_MAX_K = 2048
# When a GPU copy pays. Copying a snapshot to the GPU moves the whole index (200 MB per 100k
# 512-d float32 vectors) and starts CUDA: a one-shot `pixseek search` never earns that back.
# So the copy is made only by a process that has searched this index GPU_AFTER_SEARCHES
# times (a server, not a one-shot command), and only from GPU_MIN_VECTORS vectors (below,
# an exact CPU search is a few milliseconds: no GPU needed). Documented at index.use_gpu.
GPU_AFTER_SEARCHES = 8
GPU_MIN_VECTORS = 20_000
GPU_KINDS = ("flat", "fp16")


class GpuBackend:
    """FAISS on the GPU, for the whole process: one ``StandardGpuResources`` (its streams,
    cuBLAS handle and temporary memory, ~1.5 GiB on a large GPU), made on first need and
    shared by every index, released when a failed copy leaves no index using it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: object | None = None
        self.holders: weakref.WeakSet = weakref.WeakSet()  # indexes that may hold a copy

    def count(self) -> int:
        # faiss-cpu has no get_num_gpus in some builds.
        return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0

    def resources(self) -> object:
        with self._lock:
            if self._resources is None:
                self._resources = faiss.StandardGpuResources()
            return self._resources

    def clone(self, index: faiss.Index) -> faiss.Index:
        return faiss.index_cpu_to_gpu(self.resources(), 0, index)

    def release_if_unused(self) -> bool:
        """Drop the resources when no index holds a GPU copy (frees their memory)."""
        with self._lock:
            if any(i._gpu is not None for i in self.holders):
                return False
            self._resources = None
            return True


GPU = GpuBackend()


def gpu_can_search(k: int, params: object | None) -> bool:
    """Whether a search may run on the GPU copy: no id selector (GPU search takes none) and
    k within FAISS's GPU limit."""
    return k <= GPU_MAX_K and (params is None or getattr(params, "sel", None) is None)


def gpu_pays(kind: str, ntotal: int, searches: int) -> bool:
    """Whether to make a GPU copy now (see GPU_AFTER_SEARCHES)."""
    return kind in GPU_KINDS and ntotal >= GPU_MIN_VECTORS and searches >= GPU_AFTER_SEARCHES


@dataclass
class GpuCopy:
    """A GPU copy of a snapshot, and the snapshot state it reflects."""

    index: faiss.Index
    kind: str
    dim: int
    marks: Marks
    stamp: object

    def catch_up(self, snap: Snapshot, store: Store, model_id: str) -> bool:
        """Bring this copy from the snapshot it reflects to the current one by adding the
        vectors the store gained in between. GPU indexes cannot remove vectors
        (facebookresearch/faiss#1818), so a removal among them means a fresh copy (False)."""
        m = snap.manifest
        now = Marks(m.embedding_mark, m.removal_mark)
        if (self.kind, self.dim) != (m.kind, m.dim) or self.marks.ahead_of(now):
            return False
        removed = store.removals_since(model_id, self.marks.removal, now.removal)
        if any(r.embedding_id <= self.marks.embedding for r in removed):
            return False
        try:
            for _emb_ids, ids, vectors in store.iter_embeddings(
                model_id, after_id=self.marks.embedding, upto_id=now.embedding
            ):
                self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
        except (RuntimeError, AttributeError) as exc:
            log.info("copying the index to the GPU anew: adding to it failed (%s)", exc)
            return False
        if self.index.ntotal != snap.index.ntotal:  # e.g. a vector removed since
            return False
        self.marks, self.stamp = now, snap.stamp
        return True
