"""The FAISS index kinds: which one a library gets, how it is built, tuned and searched.

- ``flat``: exact inner product over float32 vectors. Every query reads every vector, which
  is bandwidth-bound: 1.5 ms for 8k vectors of 512 floats on two cores, 8.4 ms for 32k,
  150 ms at 1M.
- ``fp16``: the same exact search over half-size vectors.
- ``ivf``: an inverted file (k-means cells, ``nlist`` of them) over fp16 vectors; a query
  scans the ``nprobe`` nearest cells. Cheap to add to and to remove from, opens memory-mapped,
  and filters well. At 1M vectors fp16 storage scored the same recall@10 as float32
  (0.980 vs 0.981 at the same nprobe) at half the size, so it stores fp16.
- ``hnsw``: a navigable small-world graph over fp16 vectors: the fastest queries (about
  1 ms), but slow to build (28 s per 100k vectors on two cores) and FAISS cannot remove from
  it, so a removal is masked until the next full rebuild.
- ``auto``: ``flat`` while a query reads at most ``AUTO_FLAT_MAX_FLOATS``, ``ivf`` past it.

The search depth of an approximate index (``nprobe`` / ``efSearch``) is not guessed: after a
build it is measured against exact search on perturbed copies of the library's own vectors,
and the smallest setting that reaches ``TUNE_RECALL`` is kept with the index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from search.errors import ConfigError
from search.faiss_lib import faiss

KINDS = ("auto", "flat", "fp16", "ivf", "hnsw")
APPROXIMATE = ("ivf", "hnsw")

# Exact search reads N x dim floats per query. Measured on two cores at 512-d
# (`benchmarks/library_scale.py crossover`): flat 1.5 ms at 8k photos, 4.7 ms at 16k, 8.4 ms
# at 32k, while a tuned IVF index answers in 0.2-0.3 ms at all three. So flat (exact, no
# training) while it costs about 2 ms, a tenth of encoding the query text: 10k photos at
# 512-d, 13k at 384-d.
AUTO_FLAT_MAX_FLOATS = 10_000 * 512
# Back to flat only well below the threshold, so a library near it does not flip-flop.
AUTO_FLAT_RETURN = 0.5
# An IVF index is retrained (more cells) when the library has grown or shrunk this much
# since its k-means ran; in between, new vectors just join the nearest cell.
IVF_RETRAIN_FACTOR = 4
TUNE_RECALL = 0.98  # margin over the 0.95 the product promises
TUNE_QUERIES = 256
HNSW_M = 32
IVF_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
HNSW_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def choose(requested: str, count: int, dim: int, current: str | None = None) -> str:
    """The kind a library of ``count`` vectors gets; ``current`` is the kind it has now."""
    if requested != "auto":
        return requested
    floats = count * dim
    if current == "ivf" and floats > AUTO_FLAT_MAX_FLOATS * AUTO_FLAT_RETURN:
        return "ivf"
    return "ivf" if floats > AUTO_FLAT_MAX_FLOATS else "flat"


def nlist_for(count: int) -> int:
    """IVF cells: about 4 x sqrt(N), a power of two (4096 at 1M vectors, 1024 at 100k).

    Measured at 1M x 512-d on two cores: 4096 cells reach recall@10 0.98 in 3.7 ms a query
    (nprobe 16), 2048 cells need 5.3 ms for 0.976; 4096 cost 108 s of training against 27 s,
    paid once per fourfold growth of the library."""
    return int(min(65536, max(16, 2 ** round(math.log2(4 * math.sqrt(max(count, 1)))))))


def train_size(kind: str, count: int) -> int:
    """How many vectors the build samples to train on (0: no training needed)."""
    return min(count, 40 * nlist_for(count)) if kind == "ivf" else 0  # FAISS wants >= 39


def needs_rebuild(kind: str, trained_count: int, count: int) -> bool:
    """Whether an index built for ``trained_count`` vectors should be rebuilt for ``count``."""
    if kind != "ivf" or trained_count <= 0:
        return False
    return count > trained_count * IVF_RETRAIN_FACTOR or count * IVF_RETRAIN_FACTOR < trained_count


def new_index(kind: str, dim: int, count: int, train: np.ndarray | None) -> faiss.Index:
    """An empty index of ``kind`` for about ``count`` vectors, trained on ``train`` if it
    needs training. Every kind takes our ids (content ids) through ``add_with_ids``."""
    ip = faiss.METRIC_INNER_PRODUCT
    fp16 = faiss.ScalarQuantizer.QT_fp16
    if kind == "flat":
        return faiss.IndexIDMap(faiss.IndexFlatIP(dim))
    if kind == "fp16":
        return faiss.IndexIDMap(faiss.IndexScalarQuantizer(dim, fp16, ip))
    if kind == "hnsw":
        return faiss.IndexIDMap(faiss.IndexHNSWSQ(dim, fp16, HNSW_M, ip))
    if kind == "ivf":
        nlist = nlist_for(count)
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, fp16, ip)
        index.cp.min_points_per_centroid = 1  # a small library trains without complaint
        assert train is not None and len(train) > 0
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        return index
    raise ConfigError(f"index.kind: unknown kind {kind!r}; expected auto, flat, fp16, ivf "
                      "or hnsw")


def supports_remove(kind: str) -> bool:
    return kind != "hnsw"


def depth_name(kind: str) -> str | None:
    return {"ivf": "nprobe", "hnsw": "efSearch"}.get(kind)


def max_depth(kind: str, index: faiss.Index) -> int:
    """The deepest search worth asking for: every IVF cell, or HNSW's largest efSearch."""
    if kind == "ivf":
        return int(faiss.extract_index_ivf(index).nlist)
    if kind == "hnsw":
        return HNSW_LADDER[-1]
    return 0


def params(
    kind: str, depth: int, selector: faiss.IDSelector | None
) -> faiss.SearchParameters | None:
    """Search parameters: the search depth of an approximate kind, and the id filter."""
    if kind == "ivf":
        return faiss.SearchParametersIVF(nprobe=int(depth), sel=selector)
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=int(depth), sel=selector)
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def exact_top(
    queries: np.ndarray, chunks: Iterable[tuple[np.ndarray, np.ndarray]], k: int
) -> np.ndarray:
    """Exact top-k ids per query over vectors streamed in chunks (BLAS, bounded memory)."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for ids, vecs in chunks:
        scores = queries @ vecs.T
        all_s = np.concatenate([best_s, scores], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids, scores.shape)], axis=1)
        top = np.argpartition(-all_s, k - 1, axis=1)[:, :k] if all_s.shape[1] > k else None
        if top is not None:
            best_s = np.take_along_axis(all_s, top, axis=1)
            best_i = np.take_along_axis(all_i, top, axis=1)
        else:
            best_s, best_i = all_s, all_i
    return best_i


def tuning_queries(
    sample: np.ndarray, rng: np.random.Generator, n: int = TUNE_QUERIES
) -> np.ndarray:
    """Query-like vectors: library vectors moved well away from themselves (cosine 0.5), so
    a query sits between photos as a text query does, not on top of one."""
    picks = sample[rng.choice(len(sample), size=min(n, len(sample)), replace=False)]
    noise = rng.standard_normal(picks.shape).astype(np.float32)
    noise *= math.sqrt(3) / np.linalg.norm(noise, axis=1, keepdims=True)
    q = picks + noise  # |noise| = sqrt(3) x |pick|: cosine 1/sqrt(1 + 3) = 0.5
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_search(
    kind: str, index: faiss.Index, q: np.ndarray, k: int, selector: faiss.IDSelector | None
) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive search over everything the index stores: every IVF cell, or an HNSW
    index's own vector storage without the graph."""
    if kind != "hnsw":
        return index.search(q, k, params=params(kind, max_depth(kind, index), selector))
    idmap = faiss.downcast_index(index)
    storage = faiss.downcast_index(faiss.downcast_index(idmap.index).storage)
    translated = None
    if selector is not None:  # storage positions -> our ids, then the selector
        translated = faiss.IDSelectorTranslated(idmap.id_map, selector)
    scores, positions = storage.search(
        q, k, params=faiss.SearchParameters(sel=translated) if translated is not None else None
    )
    id_map = faiss.vector_to_array(idmap.id_map)
    return scores, np.where(positions >= 0, id_map[np.maximum(positions, 0)], -1)


def tune(kind: str, index: faiss.Index, queries: np.ndarray, truth: np.ndarray, k: int) -> int:
    """The smallest search depth whose recall@k against ``truth`` reaches TUNE_RECALL."""
    ladder = IVF_LADDER if kind == "ivf" else HNSW_LADDER
    top = max_depth(kind, index)
    for depth in [d for d in ladder if d < top] + [top]:
        _, got = index.search(queries, k, params=params(kind, depth, None))
        if recall(got, truth) >= TUNE_RECALL:
            return depth
    return top


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``got``."""
    hits = [len(set(g[g >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum())
            for g, t in zip(got, truth, strict=True)]
    return float(np.mean(hits)) if hits else 1.0
