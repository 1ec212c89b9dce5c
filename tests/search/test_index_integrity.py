"""A damaged snapshot is never served: bytes flipped in its vectors or its id table are
caught (block checksums, and scores no unit vectors can have), searches read the store's
vectors until a rebuild from the store replaces it, and a merge never copies the damage."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from search.store import Store
from search.vectors import FaissIndex, snapshot
from tests.search.test_vectors import MODEL, add_vectors, clustered

PHOTOS = 1500  # past MERGE_MIN: the library gets a snapshot file


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield s
    s.close()


def built(store, tmp_path, kind: str) -> tuple[FaissIndex, np.ndarray, list[int]]:
    vecs = clustered(PHOTOS)
    ids = add_vectors(store, vecs)
    index = FaissIndex(store, MODEL, tmp_path / "data", kind=kind).open()
    assert index.snap is not None and index.snap.manifest.checksums
    return index, vecs, ids


def flip(path, offset: int, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def every_photo_finds_itself(index: FaissIndex, vecs: np.ndarray, ids: list[int]) -> None:
    scores, found = index.search(vecs, 1)
    assert scores.max() <= 1.001
    np.testing.assert_array_equal(found[:, 0], ids)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_flipped_vector_bytes_are_caught_and_rebuilt(store, tmp_path, caplog, kind):
    index, vecs, ids = built(store, tmp_path, kind)
    path = index.folder / index.snap.manifest.file
    size = path.stat().st_size
    flip(path, size // 2)  # inside the vectors (flat) or the codes (ivf); same size
    assert path.stat().st_size == size

    reader = FaissIndex(store, MODEL, tmp_path / "data", kind=kind, verify=False).open()
    with caplog.at_level(logging.WARNING):
        every_photo_finds_itself(reader, vecs, ids)
    assert "damaged" in caplog.text and "rebuilding the index" in caplog.text
    reader.wait_for_repair(60)
    assert reader.damaged is None
    m = snapshot.read_manifest(index.folder)
    assert snapshot.verify(index.folder, m) is None  # a sound file replaced it
    every_photo_finds_itself(reader, vecs, ids)


def test_a_copied_id_table_entry_is_caught_even_without_checksums(store, tmp_path, caplog):
    index, vecs, ids = built(store, tmp_path, "flat")
    m = index.snap.manifest
    path = index.folder / m.file
    data = bytearray(path.read_bytes())
    # IndexIDMap writes its ids (int64) last: copy the first photo's id over the second's.
    table = len(data) - 8 * PHOTOS
    assert int.from_bytes(data[table:table + 8], "little") == ids[0]
    data[table + 8:table + 16] = data[table:table + 8]
    path.write_bytes(bytes(data))
    # An older manifest without checksums: only the query-time checks can see it.
    m.checksums = []
    snapshot.write_manifest(index.folder, m)

    reader = FaissIndex(store, MODEL, tmp_path / "data", kind="flat", verify=False).open()
    with caplog.at_level(logging.WARNING):
        scores, found = reader.search(vecs[1:2], 1)  # the second photo, by its own vector
    assert found[0, 0] == ids[1] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert "damaged" in caplog.text and f"photo {ids[0]}" in caplog.text
    reader.wait_for_repair(60)
    every_photo_finds_itself(reader, vecs, ids)


def test_a_merge_never_copies_a_damaged_snapshot(store, tmp_path, caplog):
    index, vecs, ids = built(store, tmp_path, "flat")
    flip(index.folder / index.snap.manifest.file, 1000)
    more = clustered(1100, seed=4)
    more_ids = add_vectors(store, more)
    writer = FaissIndex(store, MODEL, tmp_path / "data", kind="flat").open()
    with caplog.at_level(logging.WARNING):
        assert writer.persist()
    assert "damaged" in caplog.text
    m = snapshot.read_manifest(writer.folder)
    assert snapshot.verify(writer.folder, m) is None and m.count == PHOTOS + 1100
    every_photo_finds_itself(writer, np.concatenate([vecs, more]), ids + more_ids)
