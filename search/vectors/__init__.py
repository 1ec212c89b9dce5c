"""Vector indexes: caches of one model's vectors that follow the store.

``VectorIndex`` (``interface``) is what the engine and the indexer use: open, add, remove,
search with an id filter, persist. ``FaissIndex`` (``faiss_index``) implements it with FAISS:
a memory-mapped snapshot of a kind chosen for the library's size (``kinds``), written
atomically (``snapshot``), plus the store's changes since. ``MilvusIndex``
(``milvus_index``, ``index.backend: milvus``) keeps them in a Milvus collection.
"""

from __future__ import annotations

from pathlib import Path

from search.config import Config
from search.index_line import describe_line
from search.store import Store
from search.vectors.faiss_index import FaissIndex
from search.vectors.interface import Marks, VectorIndex

__all__ = ["FaissIndex", "Marks", "VectorIndex", "describe_line", "index_for"]


def index_for(
    store: Store, model_id: str, config: Config, verify: bool = True
) -> VectorIndex:
    """The vector index of ``model_id`` as ``config`` sets it up, not yet opened.
    ``verify=False`` for readers: opening skips the count check (see ``FaissIndex.open``)."""
    idx = config.index
    if idx.backend == "milvus":
        from search.vectors.milvus_index import MilvusIndex

        uri = idx.milvus_uri or str(Path(config.data_path) / "vectors.milvus.db")
        return MilvusIndex(store, model_id, uri, verify, idx.milvus_index_type)
    return FaissIndex(store, model_id, Path(config.data_path), idx.kind, idx.use_gpu, verify)
