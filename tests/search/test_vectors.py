"""The vector index follows the store: every kind against exact search, updates that cost
the change, removals, filters, and recovery from torn or stale files."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import insert

from search.errors import InputError
from search.store import Content, Embedding, File, Store, vector_to_blob
from search.vectors import FaissIndex, faiss_index, kinds, snapshot

MODEL = "test-model"
DIM = 32


def clustered(
    n: int, d: int = DIM, seed: int = 0, clusters: int = 40, topics: int = 0
) -> np.ndarray:
    """Unit vectors in clusters around a shared direction, like a photo library's.
    ``topics`` picks the cluster centres: another value is another kind of photo."""
    centre_rng = np.random.default_rng(10_000 + topics)
    mean = centre_rng.normal(size=d)
    centres = _unit(
        0.6 * mean / np.linalg.norm(mean) + 0.8 * _unit(centre_rng.normal(size=(clusters, d)))
    )
    rng = np.random.default_rng(seed)
    v = centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d)) * 0.9 / np.sqrt(d)
    return _unit(v).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def add_vectors(store: Store, vecs: np.ndarray, model: str = MODEL, tag: str = "") -> list[int]:
    """Contents with one embedding each (no files); returns their content ids."""
    with store.session() as s:
        ids = list(
            s.execute(
                insert(Content).returning(Content.id, sort_by_parameter_order=True),
                [
                    {"hash": f"{tag}{model}-{i}-{os.urandom(4).hex()}", "size": 1, "width": 1,
                     "height": 1}
                    for i in range(len(vecs))
                ],
            ).scalars()
        )
        s.execute(
            insert(Embedding),
            [
                {"content_id": cid, "model": model, "dim": vecs.shape[1],
                 "vector": vector_to_blob(v)}
                for cid, v in zip(ids, vecs, strict=True)
            ],
        )
    return ids


def give_files(store: Store, ids: list[int]) -> None:
    with store.session() as s:
        s.execute(
            insert(File),
            [{"path": f"/photos/{cid}.jpg", "size": 1, "mtime_ns": 1, "content_id": cid,
              "status": "ok"} for cid in ids],
        )


def exact_ids(vecs: np.ndarray, ids: list[int], queries: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-(queries @ vecs.T), axis=1, kind="stable")[:, :k]
    return np.asarray(ids)[order]


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return kinds.recall(got, truth)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield s
    s.close()


def open_index(store: Store, tmp_path, kind: str = "auto") -> FaissIndex:
    return FaissIndex(store, MODEL, tmp_path / "data", kind=kind).open()


# -- every kind against exact search ------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "fp16", "ivf", "hnsw", "auto"])
def test_each_kind_finds_what_exact_search_finds(store, tmp_path, kind):
    vecs = clustered(4000)
    ids = add_vectors(store, vecs)
    index = open_index(store, tmp_path, kind)
    assert index.rebuilt and index.count == 4000  # past MERGE_MIN: a snapshot was built
    queries = clustered(100, seed=7)
    truth = exact_ids(vecs, ids, queries, 10)
    scores, got = index.search(queries, 10)
    if kind in ("flat", "auto"):
        np.testing.assert_array_equal(got, truth)
    assert recall(got, truth) >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    # exact=True is exact for every kind (fp16-stored kinds: up to fp16 rounding), and
    # its scores are the cosine similarities.
    exact_scores, exact = index.search(queries, 10, exact=True)
    assert recall(exact, truth) >= 0.99
    np.testing.assert_allclose(exact_scores[:, 0], np.max(queries @ vecs.T, axis=1), atol=2e-3)


def test_approximate_kinds_tune_their_search_depth(store, tmp_path):
    add_vectors(store, clustered(5000))
    for kind, depth in (("ivf", "nprobe"), ("hnsw", "efSearch")):
        info = open_index(store, tmp_path, kind).describe()
        assert info["kind"] == kind and info[depth] >= 1 and info["depth"] == info[depth]
        # Held-out queries of each kind the index measured (no text seed here: photos as
        # image queries, and the same under an id filter).
        assert set(info["recall"]) == {"image", "filtered"}
        assert min(info["recall"].values()) >= kinds.PROMISED_RECALL


def test_auto_is_flat_for_a_small_library_and_ivf_past_the_threshold(
    store, tmp_path, monkeypatch
):
    add_vectors(store, clustered(3000))
    assert open_index(store, tmp_path).describe()["kind"] == "flat"
    monkeypatch.setattr(kinds, "AUTO_FLAT_MAX_FLOATS", 3500 * DIM)
    add_vectors(store, clustered(1500, seed=1), tag="more")  # 4500 > 3500: over the line
    index = open_index(store, tmp_path)
    assert index.persist()  # 1500 changes >= MERGE_MIN: the merge rebuilds as IVF
    assert index.describe()["kind"] == "ivf" and index.count == 4500
    assert kinds.choose("auto", 2000, DIM, current="ivf") == "ivf"  # no flip-flop near it
    assert kinds.choose("auto", 1000, DIM, current="ivf") == "flat"


def test_a_small_library_needs_no_snapshot(store, tmp_path):
    vecs = clustered(50)
    ids = add_vectors(store, vecs)
    index = open_index(store, tmp_path)
    assert not index.persist() and index.describe()["snapshot_vectors"] == 0
    assert index.search(vecs[3], 1)[1][0][0] == ids[3]
    assert index.is_current()


# -- updates cost the change ----------------------------------------------------------------


def test_new_vectors_are_found_without_rewriting_the_snapshot(store, tmp_path):
    add_vectors(store, clustered(3000))
    index = open_index(store, tmp_path)
    manifest = index.folder / snapshot.MANIFEST
    written = manifest.stat().st_mtime_ns
    more = clustered(5, seed=3)
    new_ids = add_vectors(store, more, tag="new")
    reopened = open_index(store, tmp_path)
    assert not reopened.rebuilt and reopened.count == 3005
    assert reopened.search(more[2], 1)[1][0][0] == new_ids[2]
    assert not reopened.persist()  # 5 changes: not worth a rewrite
    assert manifest.stat().st_mtime_ns == written
    assert reopened.describe()["snapshot_vectors"] == 3000


@pytest.mark.parametrize("topics", [0, 1], ids=["same-photos", "new-kind-of-photos"])
@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_persist_folds_the_changes_in_once_they_are_worth_it(
    store, tmp_path, kind, topics
):
    vecs = clustered(3000)
    ids = add_vectors(store, vecs)
    index = open_index(store, tmp_path, kind)
    built = snapshot.read_manifest(index.folder)
    more = clustered(faiss_index.MERGE_MIN, seed=5, topics=topics)
    more_ids = add_vectors(store, more, tag="m")
    assert index.refresh() and index.merge_due()  # MERGE_MIN changes: worth a rewrite
    assert index.persist()
    merged = snapshot.read_manifest(index.folder)
    assert len(index.delta) == 0 and index.count == merged.count == 3000 + len(more)
    assert merged.trained_count == built.trained_count  # merged in, not retrained
    assert merged.depth >= built.depth
    # Whether the new photos look like the old ones or not, the merged index finds them.
    queries = np.concatenate([clustered(25, seed=8), clustered(25, seed=9, topics=topics)])
    truth = exact_ids(np.concatenate([vecs, more]), ids + more_ids, queries, 10)
    assert recall(index.search(queries, 10)[1], truth) >= 0.95


def test_refresh_reads_what_another_process_wrote(store, tmp_path):
    add_vectors(store, clustered(3000))
    server = open_index(store, tmp_path)
    assert not server.refresh()  # nothing changed
    other = Store(store.url)  # another process's handle on the same database
    more = clustered(3, seed=9)
    new_ids = add_vectors(other, more, tag="other")
    assert server.refresh() and server.count == 3003
    assert server.search(more[0], 1)[1][0][0] == new_ids[0]
    # Another process folds enough changes into a new snapshot: the server maps that one.
    add_vectors(other, clustered(faiss_index.MERGE_MIN, seed=10), tag="bulk")
    writer = FaissIndex(other, MODEL, tmp_path / "data").open()
    assert writer.persist()
    assert server.refresh() and len(server.delta) == 0
    assert server.count == 3003 + faiss_index.MERGE_MIN
    other.close()


# -- removals and garbage collection --------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_removed_vectors_are_never_returned(store, tmp_path, kind):
    vecs = clustered(3000)
    ids = add_vectors(store, vecs)
    give_files(store, ids[100:])  # the first 100 photos lost their files
    index = open_index(store, tmp_path, kind)
    collected = store.collect_orphans()
    assert collected.contents == 100 and collected.vectors == {MODEL: 100}
    assert index.refresh() and index.count == 2900
    queries = vecs[:100]  # each one's best match was itself
    _, got = index.search(queries, 10)
    assert not set(got.ravel().tolist()) & set(ids[:100])
    assert (got >= 0).all()  # still 10 results each
    truth = exact_ids(vecs[100:], ids[100:], queries, 10)
    assert recall(got, truth) >= 0.95
    # Folded in: the next open maps a snapshot without them (HNSW masks them instead).
    assert index.persist(force=True)
    reopened = open_index(store, tmp_path, kind)
    assert not reopened.rebuilt and reopened.count == 2900
    assert not set(reopened.search(queries, 10)[1].ravel().tolist()) & set(ids[:100])


def test_gc_only_collects_contents_without_files(store):
    ids = add_vectors(store, clustered(10))
    give_files(store, ids[:6])
    assert store.collect_orphans(candidates=ids[:8]).contents == 2  # 6 and 7
    assert store.collect_orphans().contents == 2  # 8 and 9
    assert store.collect_orphans().contents == 0
    assert store.embedding_count(MODEL) == 6


def test_a_reused_content_id_is_not_hidden_by_its_old_removal(store, tmp_path):
    vecs = clustered(3000)
    ids = add_vectors(store, vecs)
    index = open_index(store, tmp_path)
    with store.session() as s:  # the newest content goes; SQLite may hand out its id again
        s.execute(insert(File), [{"path": "/p/keep", "size": 1, "mtime_ns": 1,
                                  "content_id": ids[0], "status": "ok"}])
    give_files(store, ids[1:-1])
    store.collect_orphans()
    fresh = clustered(1, seed=11)
    new_id = add_vectors(store, fresh, tag="again")[0]
    index.refresh()
    assert index.count == 3000
    assert index.search(fresh[0], 1)[1][0][0] == new_id


# -- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
@pytest.mark.parametrize("share", [0.005, 0.3])
def test_a_filter_returns_k_of_the_allowed_ids(store, tmp_path, kind, share):
    vecs = clustered(4000)
    ids = add_vectors(store, vecs)
    index = open_index(store, tmp_path, kind)
    rng = np.random.default_rng(2)
    allowed = np.sort(rng.choice(ids, size=int(share * len(ids)), replace=False))
    queries = clustered(30, seed=12)
    _, got = index.search(queries, 10, ids=allowed)
    assert (got >= 0).all() and set(got.ravel().tolist()) <= set(allowed.tolist())
    pos = np.searchsorted(ids, allowed)
    truth = exact_ids(vecs[pos], allowed.tolist(), queries, 10)
    assert recall(got, truth) >= 0.95


def test_a_filter_covers_new_vectors_too(store, tmp_path):
    ids = add_vectors(store, clustered(3000))
    index = open_index(store, tmp_path)
    new = add_vectors(store, clustered(3, seed=4), tag="n")
    index.refresh()
    _, got = index.search(clustered(1, seed=5), 5, ids=np.array(new + ids[:2]))
    assert sorted(got[0].tolist()) == sorted(new + ids[:2])


# -- recovery -------------------------------------------------------------------------------


def test_deleting_the_index_folder_gives_the_same_results(store, tmp_path):
    add_vectors(store, clustered(3000))
    first = open_index(store, tmp_path, "ivf")
    queries = clustered(20, seed=3)
    before = first.search(queries, 10)
    for path in first.folder.iterdir():
        path.unlink()
    rebuilt = open_index(store, tmp_path, "ivf")
    assert rebuilt.rebuilt
    after = rebuilt.search(queries, 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], atol=1e-6)


def _snapshot_file(index: FaissIndex):
    return index.folder / snapshot.read_manifest(index.folder).file


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "manifest"])
def test_a_torn_snapshot_is_rebuilt_from_the_store(store, tmp_path, damage):
    vecs = clustered(3000)
    ids = add_vectors(store, vecs)
    index = open_index(store, tmp_path, "ivf")
    path = _snapshot_file(index)
    if damage == "truncated":  # a crash mid-write that the rename still published
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    elif damage == "garbage":
        path.write_bytes(b"\0" * path.stat().st_size)
    elif damage == "missing":
        path.unlink()
    else:
        (index.folder / snapshot.MANIFEST).write_text('{"format": 2, "model": "tes')
    reopened = open_index(store, tmp_path, "ivf")
    assert reopened.rebuilt and reopened.count == 3000
    assert reopened.search(vecs[5], 1)[1][0][0] == ids[5]


def test_a_crash_mid_merge_leaves_the_previous_snapshot(store, tmp_path):
    vecs = clustered(3000)
    add_vectors(store, vecs)
    index = open_index(store, tmp_path, "ivf")
    good = _snapshot_file(index)
    # What a kill -9 during the next write leaves: a half-written temporary file, and a
    # complete next generation that the manifest was not yet switched to.
    (index.folder / ".vectors-000009.faiss.123.tmp").write_bytes(good.read_bytes()[:999])
    (index.folder / "vectors-000002.faiss").write_bytes(good.read_bytes())
    more = add_vectors(store, clustered(2, seed=6), tag="after")
    reopened = open_index(store, tmp_path, "ivf")
    assert not reopened.rebuilt and reopened.count == 3002
    assert set(reopened.search(clustered(2, seed=6), 1)[1][:, 0].tolist()) == set(more)
    add_vectors(store, clustered(faiss_index.MERGE_MIN, seed=7), tag="bulk")
    reopened.refresh()
    assert reopened.persist()  # the next write clears the leftovers
    names = sorted(p.name for p in reopened.folder.iterdir())
    assert names == ["manifest.json", snapshot.read_manifest(reopened.folder).file, "write.lock"]


def test_a_crash_between_the_store_commit_and_the_index_update(store, tmp_path):
    add_vectors(store, clustered(3000))
    open_index(store, tmp_path)
    # The store committed, then the process died before any index work: nothing to lose,
    # since the index reads what the store holds beyond its marks when it opens.
    more = clustered(4, seed=13)
    new_ids = add_vectors(store, more, tag="late")
    index = open_index(store, tmp_path)
    assert not index.rebuilt
    assert index.search(more, 1)[1][:, 0].tolist() == new_ids


def test_a_store_that_lost_vectors_behind_our_back_is_noticed(store, tmp_path):
    ids = add_vectors(store, clustered(3000))
    open_index(store, tmp_path)
    with store.session() as s:  # deleted without the removal log (not through pixseek)
        s.delete(s.get(Content, ids[0]))
    # A reader trusts the snapshot's count (the engine's join skips the orphan meanwhile);
    # a writer checks it against the store, and rebuilds.
    reader = FaissIndex(store, MODEL, tmp_path / "data", verify=False).open()
    assert not reader.rebuilt and reader.count == 3000
    reopened = open_index(store, tmp_path)
    assert reopened.rebuilt and reopened.count == 2999


def test_a_replaced_database_is_noticed(store, tmp_path):
    add_vectors(store, clustered(3000))
    open_index(store, tmp_path)
    fresh = Store(f"sqlite:///{tmp_path / 'other.sqlite'}")
    add_vectors(fresh, clustered(1200, seed=1))  # lower marks than the snapshot records
    index = FaissIndex(fresh, MODEL, tmp_path / "data").open()
    assert index.rebuilt and index.count == 1200
    fresh.close()


def test_one_index_per_model_never_mixed(store, tmp_path):
    add_vectors(store, clustered(1100, d=16), model="a")
    add_vectors(store, clustered(1100, d=8), model="b")
    a = FaissIndex(store, "a", tmp_path).open()
    b = FaissIndex(store, "b", tmp_path).open()
    assert (a.dim, a.count, b.dim, b.count) == (16, 1100, 8, 1100)
    assert a.folder != b.folder
    with pytest.raises(InputError, match="dimensions"):
        a.search(np.ones(8, np.float32), 1)


def test_is_current_tracks_the_snapshot(store, tmp_path):
    index = FaissIndex(store, MODEL, tmp_path / "data")
    assert index.is_current()  # an empty store needs no index
    add_vectors(store, clustered(3000))
    assert not index.is_current()  # a library that needs a snapshot has none
    index.open()
    assert index.is_current()
    _snapshot_file(index).write_bytes(b"torn")
    assert not index.is_current()


def test_the_format_1_file_goes(store, tmp_path):
    add_vectors(store, clustered(10))
    legacy = snapshot.folder_for(tmp_path, MODEL)
    legacy = legacy.parent / (legacy.name + ".faiss")
    legacy.write_bytes(b'{"format": 1}\n')
    index = FaissIndex(store, MODEL, tmp_path).open()
    assert legacy.exists()  # opening writes nothing (a read-only library opens too)
    assert index.persist(force=True)  # a writer's next snapshot clears it away
    assert not legacy.exists()


KILLED_WRITER = """
import sys
from search.store import Store
from search.vectors import FaissIndex
store = Store(sys.argv[1])
index = FaissIndex(store, sys.argv[2], sys.argv[3], kind="ivf").open()
print("writing", flush=True)
while True:  # rewrite the snapshot until killed: every moment of a write is a candidate
    index.persist(force=True)
"""


def test_kill_9_at_any_moment_of_a_snapshot_write_loses_nothing(store, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    vecs = clustered(3000)
    ids = add_vectors(store, vecs)
    open_index(store, tmp_path, "ivf")
    rng = np.random.default_rng(0)
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, store.url, MODEL, str(tmp_path / "data")],
            stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        more = clustered(2, seed=100 + round_)
        ids += add_vectors(store, more, tag=f"r{round_}")
        vecs = np.concatenate([vecs, more])
        index = open_index(store, tmp_path, "ivf")
        assert index.count == len(ids)
        _, got = index.search(vecs[-2:], 1, exact=True)
        assert got[:, 0].tolist() == ids[-2:]
