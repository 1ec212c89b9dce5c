"""The FAISS index kinds: which one a library gets, how it is built, tuned and searched.

- ``flat``: exact inner product over float32 vectors. Every query reads every vector, which
  is bandwidth-bound: 1.5 ms for 8k vectors of 512 floats on two cores, 8.4 ms for 32k,
  150 ms at 1M.
- ``fp16``: the same exact search over half-size vectors.
- ``ivf``: an inverted file (k-means cells, ``nlist`` of them) holding 4-bit codes of the
  vectors (FAISS ``QT_4bit``, 192 bytes a 384-d photo against 768 for fp16); a query scans
  the ``nprobe`` nearest cells for ``candidates(k)`` photos, which the index re-ranks
  exactly from the store's float32 vectors. Measured on 200k synthetic photos with the
  offline model's text embeddings as queries: 4-bit codes re-ranked from 10 x k candidates
  find what fp16 codes find (recall@10 0.994 against 0.994 at the same nprobe), 8-bit from
  4 x k, product quantization (PQ48, PQ96, RaBitQ) never did (0.73, 0.98 only at R10 with
  nprobe 512, 0.47). Cheap to add to and remove from, opens memory-mapped, filters well.
- ``hnsw``: a navigable small-world graph over fp16 vectors: the fastest queries (about
  1 ms), but slow to build (28 s per 100k vectors on two cores) and FAISS cannot remove from
  it, so a removal is masked until the next full rebuild.
- ``auto``: ``flat`` while a query reads at most ``AUTO_FLAT_MAX_FLOATS``, ``ivf`` past it.

The search depth of an approximate index (``nprobe`` / ``efSearch``) is not guessed: after a
build or merge it is measured against exact search on the queries this engine is asked
(``queries``: the model's own text embeddings, served queries, library photos as image
queries, and text queries under an id filter), and the smallest setting whose recall on
the tuning half of every kind reaches ``TUNE_RECALL`` is kept with the index, with the
recall each kind reaches on its held-out half.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

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
TUNE_RECALL = 0.985  # over the 0.95 promised; at 1M: depth 768 (0.99 chose 1536, 1.3x the latency)
PROMISED_RECALL = 0.95  # held-out recall below this searches deeper
TUNE_QUERIES = 256  # library photos used as image queries
MAX_SET = 1024  # queries of one kind a tuning uses (half to tune, half to judge)
# Filtered queries search 1/FILTER_SHARE times deeper (at 1M photos: every cell), so fewer
# of them: 256 keep a tuning of a 1M-photo index to about a minute on two cores.
MAX_FILTERED = 256
# Candidates an IVF search re-ranks exactly: 10 x k (see above), but past k = 100 only
# k + 900, so a date-sorted page (k 1000) reads 1,900 vectors, not 10,000.
RERANK = 10
RERANK_CAP = 100
# Text queries under an id filter are judged with this share of the library allowed.
FILTER_SHARE = 0.05
HNSW_M = 32
# Text queries may need a quarter of the cells (1024 of 4096 at 1M synthetic photos with
# the offline model's text embeddings: recall@10 0.9875, against 0.83 at 128).
IVF_LADDER = tuple(sorted({1, 2, 3} | {m * 2**e for e in range(1, 16) for m in (2, 3)}))
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
        index = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_4bit, ip
        )
        index.cp.min_points_per_centroid = 1  # a small library trains without complaint
        assert train is not None and len(train) > 0
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        return index
    raise ConfigError(f"index.kind: unknown kind {kind!r}; expected auto, flat, fp16, ivf "
                      "or hnsw")


def supports_remove(kind: str) -> bool:
    return kind != "hnsw"


def reranks(kind: str) -> bool:
    """Whether the kind's stored codes are too coarse to rank by: candidates are re-scored
    from the store's vectors, and exact search reads the store."""
    return kind == "ivf"


def candidates(kind: str, k: int) -> int:
    """How many candidates a search of ``kind`` fetches for the top ``k``."""
    if not reranks(kind):
        return k
    return k + min(k, RERANK_CAP) * (RERANK - 1)


def filtered_depth(depth: int, top: int, live: int, allowed: int) -> int:
    """The depth for a search among ``allowed`` of ``live`` vectors: a filter thins each
    cell out, so look as much further."""
    return min(top, math.ceil(depth * live / max(1, allowed)))


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


class TopK:
    """The exact top-k per query of scores that arrive in chunks (bounded memory): the one
    top-k merge of the package. ``distinct``: an id that arrives twice (a photo found by
    two searches) counts once, with its best score."""

    def __init__(self, n: int, k: int, distinct: bool = False) -> None:
        self.k = k
        self.distinct = distinct
        self.scores = np.zeros((n, 0), np.float32)
        self.ids = np.zeros((n, 0), np.int64)

    def add(self, scores: np.ndarray, ids: np.ndarray) -> None:
        """Scores [n, m] of ids [m] (or [n, m]); ids below 0 never count."""
        ids = np.broadcast_to(np.asarray(ids, np.int64), scores.shape)
        s = np.concatenate([self.scores, np.where(ids < 0, -np.inf, scores)], axis=1)
        i = np.concatenate([self.ids, ids], axis=1)
        if self.distinct:
            s = _best_of_each_id(s, i)
        if s.shape[1] > self.k:
            part = np.argpartition(-s, self.k - 1, axis=1)[:, :self.k]
            s, i = np.take_along_axis(s, part, axis=1), np.take_along_axis(i, part, axis=1)
        self.scores, self.ids = s.astype(np.float32), i

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) best first, padded FAISS-style to k: -inf and -1 past the last."""
        order = np.argsort(-self.scores, axis=1, kind="stable")
        s = np.take_along_axis(self.scores, order, axis=1)
        i = np.take_along_axis(self.ids, order, axis=1)
        i = np.where(np.isneginf(s), -1, i)
        return pad(s, i, self.k)


def _best_of_each_id(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``scores`` with every repeat of an id in a row set to -inf but its best one."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(ids, order, axis=1)
    out = scores.astype(np.float32)  # a copy
    for row in range(len(ids)):
        _, first = np.unique(ranked[row], return_index=True)
        repeat = np.ones(ids.shape[1], bool)
        repeat[first] = False
        out[row, order[row][repeat & (ranked[row] >= 0)]] = -np.inf
    return out


def pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen results to k columns, FAISS-style: -inf scores and -1 ids past the last."""
    n, m = ids.shape
    if m >= k:
        return scores, ids
    return (
        np.concatenate([scores, np.full((n, k - m), -np.inf, np.float32)], axis=1),
        np.concatenate([ids, np.full((n, k - m), -1, np.int64)], axis=1),
    )


def exact_top(
    queries: np.ndarray, chunks: Iterable[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores, ids) per query over vectors streamed in chunks (BLAS, bounded
    memory), best first."""
    top = TopK(len(queries), k)
    for ids, vecs in chunks:
        top.add(queries @ np.asarray(vecs, np.float32).T, ids)
    return top.result()


def filter_ids(ids: np.ndarray) -> np.ndarray:
    """The FILTER_SHARE of ``ids`` that filtered queries are judged with (a fixed hash)."""
    mixed = (np.asarray(ids, np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return np.asarray(ids)[mixed < np.uint64(int(FILTER_SHARE * 2**32))]


@dataclass
class QuerySet:
    """Queries of one kind with their exact top-k, and the id filter they run under."""

    queries: np.ndarray
    truth: np.ndarray
    allowed: np.ndarray | None = None

    def half(self, which: int) -> QuerySet:
        """Rows 0, 2, 4, ... (``which`` 0: tuning) or 1, 3, 5, ... (1: held out)."""
        return QuerySet(self.queries[which::2], self.truth[which::2], self.allowed)


def recall_at(kind: str, index: faiss.Index, qs: QuerySet, depth: int, k: int, live: int) -> float:
    """Recall@k of a search at ``depth`` against ``qs.truth``, counting the candidates the
    search re-ranks (exact re-ranking puts every true neighbour among them in the top k)."""
    if not len(qs.queries):
        return 1.0
    selector = None
    if qs.allowed is not None:
        depth = filtered_depth(depth, max_depth(kind, index), live, len(qs.allowed))
        selector = faiss.IDSelectorBatch(qs.allowed)
    _, got = index.search(qs.queries, candidates(kind, k), params=params(kind, depth, selector))
    return recall(got, qs.truth)


def tune(
    kind: str, index: faiss.Index, sets: dict[str, QuerySet], k: int, live: int,
    floor: int = 0,
) -> tuple[int, dict[str, float]]:
    """The smallest depth whose recall on the tuning half of every set reaches TUNE_RECALL,
    then deeper while a held-out half is below PROMISED_RECALL; with each set's held-out
    recall at the depth chosen. ``floor``: the least depth to consider."""
    ladder = IVF_LADDER if kind == "ivf" else HNSW_LADDER
    top = max_depth(kind, index)
    steps = [d for d in ladder if floor <= d < top] + [top]  # a merge never looks shallower
    if kind == "ivf":  # many queries at once: one per core, not one query's cells per core
        faiss.extract_index_ivf(index).parallel_mode = 0
    try:
        return _tune(kind, index, sets, k, live, steps)
    finally:
        if kind == "ivf":
            faiss.extract_index_ivf(index).parallel_mode = 1


def _tune(
    kind: str, index: faiss.Index, sets: dict[str, QuerySet], k: int, live: int,
    steps: list[int],
) -> tuple[int, dict[str, float]]:
    tuning = {name: qs.half(0) for name, qs in sets.items()}
    held = {name: qs.half(1) for name, qs in sets.items()}
    # Recall grows with depth: bisect the ladder for the first step every tuning half
    # passes (6 searches of the sets at 1M photos instead of up to 24).
    lo, hi = 0, len(steps) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if all(recall_at(kind, index, qs, steps[mid], k, live) >= TUNE_RECALL
               for qs in tuning.values()):
            hi = mid
        else:
            lo = mid + 1
    chosen = lo
    while True:
        depth = steps[chosen]
        measured = {name: round(recall_at(kind, index, qs, depth, k, live), 4)
                    for name, qs in held.items()}
        if chosen == len(steps) - 1 or min(measured.values(), default=1.0) >= PROMISED_RECALL:
            return depth, measured
        chosen += 1


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


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``got``."""
    hits = [len(set(g[g >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum())
            for g, t in zip(got, truth, strict=True)]
    return float(np.mean(hits)) if hits else 1.0
