"""The FAISS index is a cache of the store: it catches up, and deleting it loses nothing."""

import numpy as np
import pytest

from search.store import Content, Embedding, Store, vector_to_blob
from search.vectors import VectorIndex

MODEL = "test-model"


def add_vectors(store: Store, vecs: np.ndarray, model: str = MODEL, start: int = 0) -> list[int]:
    ids = []
    with store.session() as s:
        for i, v in enumerate(vecs):
            c = Content(hash=f"h{start + i}-{model}", size=1, width=1, height=1)
            s.add(c)
            s.flush()
            s.add(Embedding(content_id=c.id, model=model, dim=len(v), vector=vector_to_blob(v)))
            ids.append(c.id)
    return ids


def unit(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):  # noqa: ANN001, ANN201
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield s
    s.close()


def test_scores_are_cosine_similarities_best_first(store, tmp_path):  # noqa: ANN001
    vecs = unit(50)
    ids = add_vectors(store, vecs)
    index = VectorIndex(store, MODEL, tmp_path).open()
    scores, got = index.search(vecs[7], 5)
    assert got[0][0] == ids[7] and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    expected = np.sort(vecs @ vecs[7])[::-1][:5]
    np.testing.assert_allclose(scores[0], expected, atol=1e-5)


def test_catches_up_with_vectors_written_after_saving(store, tmp_path):  # noqa: ANN001
    add_vectors(store, unit(20))
    VectorIndex(store, MODEL, tmp_path).open().save()
    more = unit(5, seed=1)
    new_ids = add_vectors(store, more, start=100)
    index = VectorIndex(store, MODEL, tmp_path).open()
    assert not index.rebuilt and index.count == 25
    assert index.search(more[2], 1)[1][0][0] == new_ids[2]


def test_deleting_the_index_file_gives_the_same_results(store, tmp_path):  # noqa: ANN001
    vecs = unit(200)
    add_vectors(store, vecs)
    first = VectorIndex(store, MODEL, tmp_path).open()
    first.save()
    queries = unit(10, seed=3)
    before = first.search(queries, 10)
    first.path.unlink()
    rebuilt = VectorIndex(store, MODEL, tmp_path).open()
    after = rebuilt.search(queries, 10)
    assert rebuilt.rebuilt
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], atol=1e-6)


def test_corrupt_or_stale_file_is_rebuilt(store, tmp_path):  # noqa: ANN001
    add_vectors(store, unit(30))
    index = VectorIndex(store, MODEL, tmp_path).open()
    index.save()
    index.path.write_bytes(b"garbage")
    assert VectorIndex(store, MODEL, tmp_path).open().count == 30
    # The store lost vectors (a content deleted): the cache notices and rebuilds.
    VectorIndex(store, MODEL, tmp_path).open().save()
    with store.session() as s:
        s.delete(s.get(Content, 1))
    reopened = VectorIndex(store, MODEL, tmp_path).open()
    assert reopened.rebuilt and reopened.count == 29


def test_one_index_per_model_never_mixed(store, tmp_path):  # noqa: ANN001
    add_vectors(store, unit(10, d=16), model="a")
    add_vectors(store, unit(10, d=8), model="b")
    a = VectorIndex(store, "a", tmp_path).open()
    b = VectorIndex(store, "b", tmp_path).open()
    assert (a.dim, a.count, b.dim, b.count) == (16, 10, 8, 10)
    assert a.path != b.path


def test_is_current_tracks_the_store(store, tmp_path):  # noqa: ANN001
    index = VectorIndex(store, MODEL, tmp_path)
    assert index.is_current()  # an empty store needs no index file
    add_vectors(store, unit(5))
    assert not index.is_current()
    index.open().save()
    assert index.is_current()
    add_vectors(store, unit(1, seed=9), start=50)
    assert not index.is_current()


def test_fp16_index_ranks_like_flat(store, tmp_path):  # noqa: ANN001
    vecs = unit(300, d=64)
    add_vectors(store, vecs)
    q = unit(5, d=64, seed=4)
    flat = VectorIndex(store, MODEL, tmp_path, kind="flat").open().search(q, 3)
    half = VectorIndex(store, MODEL, tmp_path, kind="fp16").open().search(q, 3)
    np.testing.assert_array_equal(flat[1][:, 0], half[1][:, 0])
    np.testing.assert_allclose(flat[0], half[0], atol=2e-3)
