"""What a FAISS index holds beside its snapshot: the vectors added since (``Delta``, searched
exactly), and the merge of the snapshot's and the delta's results."""

from __future__ import annotations

import numpy as np

from search.faiss_lib import faiss
from search.vectors import kinds


class Delta:
    """Vectors added since the snapshot: few (the merge policy bounds them), searched exactly.
    Additions queue up in parts and are joined into one array when next needed."""

    def __init__(self) -> None:
        self.emb_ids = np.zeros(0, np.int64)
        self.ids = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, 0), np.float32)
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.emb_ids) + sum(len(p[0]) for p in self._parts)

    def add(self, emb_ids: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._parts.append((emb_ids, ids, np.asarray(vectors, np.float32)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(content ids, vectors) of everything added."""
        if self._parts:
            parts = [(self.emb_ids, self.ids, self.vectors)] if len(self.emb_ids) else []
            parts += self._parts
            self.emb_ids = np.concatenate([p[0] for p in parts])
            self.ids = np.concatenate([p[1] for p in parts])
            self.vectors = np.ascontiguousarray(np.concatenate([p[2] for p in parts]))
            self._parts = []
        return self.ids, self.vectors

    def drop(self, emb_ids: list[int]) -> None:
        self.arrays()
        if emb_ids and len(self.emb_ids):
            keep = ~np.isin(self.emb_ids, np.asarray(emb_ids, np.int64))
            self.emb_ids, self.ids = self.emb_ids[keep], self.ids[keep]
            self.vectors = self.vectors[keep]

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        ids, vectors = self.arrays()
        if allowed is not None:
            keep = np.isin(ids, allowed)
            ids, vectors = ids[keep], vectors[keep]
        if len(ids) == 0:
            n = len(queries)
            return kinds.pad(np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64), k)
        # FAISS, not numpy: a numpy matrix product leaves OpenBLAS threads spinning, which
        # took the cores from torch and doubled the next text encoding (50 -> 134 ms).
        scores, positions = faiss.knn(
            queries, vectors, min(k, len(ids)), metric=faiss.METRIC_INNER_PRODUCT
        )
        found = np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)
        return kinds.pad(scores, found, k)


def merge_results(
    parts: list[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best k of several searches' results; an id found by two of them counts once."""
    width = min(k, sum(p[1].shape[1] for p in parts))
    top = kinds.TopK(len(parts[0][1]), width, distinct=len(parts) > 1)
    for scores, ids in parts:
        top.add(scores, ids)
    return top.result()
