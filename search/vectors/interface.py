"""What every vector index does, whatever engine holds the vectors (FAISS here; a
distributed engine can implement the same five operations).

A vector index is a cache of one model's vectors (architecture invariant 1): the store is the
truth, and the index records how far into the store's history it is with two ``Marks``,
the newest embedding id and the newest removal it has applied. Both only grow, so catching
up reads what changed since, never the whole library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from search.store import Removal, Store


@dataclass(frozen=True)
class Marks:
    embedding: int = 0  # newest embedding id applied
    removal: int = 0  # newest removal id applied

    def behind(self, other: Marks) -> bool:
        """Whether ``other`` (the store's marks) holds changes these marks lack."""
        return other.embedding > self.embedding or other.removal > self.removal

    def ahead_of(self, other: Marks) -> bool:
        """Whether these marks claim changes ``other`` never had: the store was replaced."""
        return self.embedding > other.embedding or self.removal > other.removal


class VectorIndex(ABC):
    """Similarity search over one model's unit vectors, keyed by content id."""

    def __init__(self, store: Store, model_id: str) -> None:
        self.store = store
        self.model_id = model_id
        self.marks = Marks()

    # -- the interface ---------------------------------------------------------------------

    @abstractmethod
    def open(self) -> VectorIndex:
        """Load what was persisted and catch up with the store (rebuilding only when the
        store disagrees with it). Returns self."""

    @abstractmethod
    def add(self, embedding_ids: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under content ``ids`` (``embedding_ids`` say which store rows)."""

    @abstractmethod
    def remove(self, removals: list[Removal]) -> None:
        """Drop removed embeddings: they are never scanned or returned again."""

    @abstractmethod
    def search(
        self,
        queries: np.ndarray,
        k: int,
        ids: np.ndarray | None = None,
        exact: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, content ids) per query row, best first; ids are -1 past the last
        match. ``ids`` restricts the search to those content ids; ``exact`` bypasses any
        approximation."""

    @abstractmethod
    def persist(self, force: bool = False) -> bool:
        """Make the current state durable where that saves work on the next open; True if
        something was written. ``force`` writes even when little changed."""

    @property
    @abstractmethod
    def count(self) -> int:
        """Vectors that searches can return."""

    @abstractmethod
    def is_current(self) -> bool:
        """Whether the next ``open`` needs no rebuild (cheap: does not open the index)."""

    @abstractmethod
    def describe(self) -> dict:
        """What is persisted, for ``pixseek status`` (cheap: does not open the index)."""

    def refresh(self) -> bool:
        """Catch up with what other processes changed; cheap when they changed nothing."""
        return self.catch_up()

    def scan(self, queries: np.ndarray, k: int, depth: int) -> tuple | None:
        """(approximate cosines, ids) of the k nearest per query at a fixed ``depth`` (IVF
        lists probed, HNSW's efSearch): many queries at once, cheaper than ``search``, whose
        scores its caller checks again. None where the index has nothing approximate to
        scan (an exact kind, Milvus): then ``search`` it."""
        return None

    # -- following the store --------------------------------------------------------------

    def store_marks(self) -> Marks:
        return Marks(*self.store.change_marks(self.model_id))

    def catch_up(self, upto: Marks | None = None) -> bool:
        """Apply what the store changed since ``marks`` (up to ``upto``): new vectors first,
        then removals, so a vector removed while we read it is dropped again. Two index
        seeks when nothing changed. True if anything was applied."""
        upto = upto or self.store_marks()
        if not self.marks.behind(upto):
            return False
        for emb_ids, ids, vectors in self.store.iter_embeddings(
            self.model_id, after_id=self.marks.embedding, upto_id=upto.embedding
        ):
            self.add(emb_ids, ids, vectors)
        removals = self.store.removals_since(self.model_id, self.marks.removal, upto.removal)
        if removals:
            self.remove(removals)
        self.marks = upto
        return True
