"""The approximate index is tuned on the queries people send: text embeddings that sit apart
from the photos (the modality gap), served queries that a merge re-checks, and a sample of
them that stays bounded."""

from __future__ import annotations

import numpy as np
import pytest

from search.store import Store
from search.vectors import FaissIndex, kinds
from search.vectors.queries import SERVED_MAX, QuerySample
from tests.search.test_vectors import DIM, MODEL, add_vectors, clustered, exact_ids

pytestmark = pytest.mark.slow  # tunes approximate indexes on thousands of vectors

PHOTOS = 20_000  # IVF with 512 cells: enough cells for a depth to matter


def text_like(n: int, seed: int, gap_seed: int = 5) -> np.ndarray:
    """Text-query-like vectors: about some photos' subject, but shifted along one shared
    direction, as a CLIP-family model's text embeddings sit apart from its image ones."""
    gap = np.random.default_rng(gap_seed).normal(size=DIM)
    gap /= np.linalg.norm(gap)
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, DIM)) * 0.5 / np.sqrt(DIM)
    v = 0.45 * clustered(n, seed=seed + 1) + 0.55 * gap + noise
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def library(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    vecs = clustered(PHOTOS)
    ids = add_vectors(store, vecs)
    yield store, vecs, ids
    store.close()


def held_out_recall(index: FaissIndex, vecs, ids, queries) -> float:
    _, got = index.search(queries, 10)
    return kinds.recall(got, exact_ids(vecs, ids, queries, 10))


def test_ivf_reaches_the_target_for_text_queries_across_a_modality_gap(library, tmp_path):
    store, vecs, ids = library
    queries = text_like(200, seed=2)  # never seen by the tuning
    blind = FaissIndex(store, MODEL, tmp_path / "blind", kind="ivf").open()
    # Tuned on photos alone, the depth is too shallow for text: the gap this fixes.
    assert held_out_recall(blind, vecs, ids, queries) < kinds.PROMISED_RECALL
    assert "text" not in blind.describe()["recall"]

    index = FaissIndex(store, MODEL, tmp_path / "data", kind="ivf")
    QuerySample(index.folder, MODEL).write_seed(text_like(600, seed=1))  # the model's texts
    index.open()
    info = index.describe()
    assert info["kind"] == "ivf" and info["nprobe"] > blind.describe()["nprobe"]
    assert set(info["recall"]) == {"text", "image", "filtered"}
    assert min(info["recall"].values()) >= kinds.PROMISED_RECALL
    assert info["recall_queries"]["text"] == 600
    assert held_out_recall(index, vecs, ids, queries) >= kinds.PROMISED_RECALL
    # The 4-bit codes only choose candidates: scores are the exact cosines.
    scores, got = index.search(queries[:5], 10)
    for row, q in zip(range(5), queries[:5], strict=True):
        exact = vecs[[ids.index(int(i)) for i in got[row]]] @ q
        np.testing.assert_allclose(scores[row], exact, atol=1e-5)
    # Filtered by ids, and exact: the store's float32 vectors.
    allowed = np.asarray(ids[::20], np.int64)
    _, got = index.search(queries, 10, ids=allowed)
    truth = exact_ids(vecs[::20], ids[::20], queries, 10)
    assert kinds.recall(got, truth) >= kinds.PROMISED_RECALL
    exact_scores, exact = index.search(queries[:20], 10, exact=True)
    np.testing.assert_array_equal(exact, exact_ids(vecs, ids, queries[:20], 10))
    np.testing.assert_allclose(exact_scores[:, 0], (queries[:20] @ vecs.T).max(axis=1), atol=1e-5)


def test_a_merge_keeps_the_tuned_depth_honest(library, tmp_path):
    store, vecs, ids = library
    index = FaissIndex(store, MODEL, tmp_path / "data", kind="ivf").open()
    shallow = index.describe()["nprobe"]  # tuned on photos only
    # A server then answers text queries: it records them in the sample.
    served = QuerySample(index.folder, MODEL)
    for q in text_like(300, seed=11):
        served.record("text", q)
    served.flush()
    # New photos arrive; the merge re-checks recall on what was served and looks deeper.
    more = clustered(2000, seed=3)
    more_ids = add_vectors(store, more)
    index.refresh()
    assert index.persist()
    info = index.describe()
    assert info["nprobe"] > shallow and info["recall"]["text"] >= kinds.PROMISED_RECALL
    assert info["recall_queries"]["text"] == 300
    all_vecs, all_ids = np.concatenate([vecs, more]), ids + more_ids
    assert held_out_recall(index, all_vecs, all_ids, text_like(200, seed=12)) >= 0.95

    # More traffic alone waits for the next merge: adding one photo never pays a tuning.
    for q in text_like(400, seed=21, gap_seed=9):  # text about something else
        served.record("text", q)
    served.flush()
    assert not index.persist()
    assert index.describe()["recall_queries"]["text"] == 300


def test_text_queries_that_arrive_after_the_build_retune_in_place(library, tmp_path):
    store, vecs, ids = library
    index = FaissIndex(store, MODEL, tmp_path / "data", kind="ivf").open()
    before = index.describe()
    assert "text" not in before["recall"]
    QuerySample(index.folder, MODEL).write_seed(text_like(600, seed=1))  # the indexer's seed
    assert index.persist()  # nothing to merge: a new manifest naming the same file
    after = index.describe()
    assert after["bytes"] == before["bytes"] and after["nprobe"] > before["nprobe"]
    assert after["recall"]["text"] >= kinds.PROMISED_RECALL
    assert held_out_recall(index, vecs, ids, text_like(200, seed=2)) >= kinds.PROMISED_RECALL
    assert not index.persist()  # tuned on the seed now: nothing to do


def test_the_query_sample_stays_bounded(tmp_path):
    sample = QuerySample(tmp_path / "index-x", "m")
    rng = np.random.default_rng(0)
    for i in range(3 * SERVED_MAX + 7):
        v = rng.normal(size=DIM).astype(np.float32)
        sample.record("text", v / np.linalg.norm(v))
        if i % 5 == 0:
            sample.record("image", v)
        sample.record("nonsense", v)  # not a kind: ignored
    sample.flush()
    served = QuerySample(tmp_path / "index-x", "m").served()
    assert served["text"].shape == (SERVED_MAX, DIM)
    assert len(served["image"]) == (3 * SERVED_MAX + 7 + 4) // 5
    assert sample.served_counts() == {"text": 3 * SERVED_MAX + 7, "image": len(served["image"])}
    files = list(sample.folder.iterdir())
    assert [f.name for f in files] == ["served.npz"]  # no temporary files left
    assert files[0].stat().st_size < 2 * SERVED_MAX * DIM * 2 + 4096  # float16 rows
    # Another model's sample under the same folder is not read as this one's.
    assert QuerySample(tmp_path / "index-x", "other").served() == {}


def test_a_read_only_sample_only_loses_the_sample(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    sample = QuerySample(folder / "index-x", "m")
    (tmp_path / "ro" / "query-sample-x").write_text("a file where the folder should be")
    sample.record("text", np.ones(DIM, np.float32))
    sample.flush()  # cannot write: no error
    assert sample.served() == {}
