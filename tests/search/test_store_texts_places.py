"""The store's text and place rows on both databases: full-text search (FTS5 on SQLite, a
GIN tsvector on PostgreSQL), place and distance filters, and an existing library upgraded
by the migrations."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import insert

from search import places
from search.migrate import alembic_config, current_revision, head_revision
from search.store import Embedding, File, Filter, Store, utcnow, vector_to_blob


def _library(store: Store, n: int = 4) -> list[int]:
    with store.session() as s:
        ids = store.insert_contents(s, [
            {"hash": f"h{i}", "size": 1, "width": 1, "height": 1} for i in range(n)])
        s.execute(insert(Embedding), [
            {"content_id": cid, "model": "m", "dim": 2, "vector": vector_to_blob([1.0, 0.0]),
             "created_at": utcnow()} for cid in ids])
        s.execute(insert(File), [
            {"path": f"/photos/{i}.jpg", "size": 1, "mtime_ns": 1, "content_id": cid,
             "status": "ok", "updated_at": utcnow()} for i, cid in enumerate(ids)])
    return ids


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    s = Store(url)
    yield s
    s.close()


def test_text_search_ranks_photos_by_their_words(store):
    a, b, c, d = _library(store)
    store.save_texts([
        {"content_id": a, "engine": "e", "status": "ok", "text": "STARBUCKS COFFEE\nTotal 4.50"},
        {"content_id": b, "engine": "e", "status": "ok", "text": "Coffee shop opening hours"},
        {"content_id": c, "engine": "e", "status": "ok", "text": ""},
        {"content_id": d, "engine": "e", "status": "failed", "text": "", "error": "timed out"},
    ])
    found = [cid for cid, _ in store.text_search(["starbucks", "coffee"], 10)]
    assert found[0] == a and set(found) == {a, b}
    assert [cid for cid, _ in store.text_search(["hours"], 10)] == [b]
    assert store.text_search(["nothing"], 10) == []
    assert store.texts([a, b, c, d]) == {a: "STARBUCKS COFFEE\nTotal 4.50",
                                         b: "Coffee shop opening hours"}
    assert store.contents_needing_text("e", 0, 10) == []
    assert [cid for cid, _ in store.contents_needing_text("e2", 0, 10)] == [a, b, c, d]
    # Re-read by a better engine: the row (and its index entry) is replaced.
    store.save_texts([{"content_id": a, "engine": "e2", "status": "ok", "text": "Latte"}])
    assert store.text_search(["starbucks"], 10) == []
    assert [cid for cid, _ in store.text_search(["latte"], 10)] == [a]
    # Deleting the photo deletes its text, and the full-text index forgets it.
    with store.session() as s:
        s.query(File).filter(File.content_id == a).delete()
    store.collect_orphans([a])
    assert store.text_search(["latte"], 10) == []


def test_place_filters(store):
    lisbon, kyoto, unknown, _ = _library(store)
    rows = [{"content_id": unknown, "source": "s"}]
    for cid, (lat, lon) in ((lisbon, (38.7223, -9.1393)), (kyoto, (35.0116, 135.7681))):
        pos = places.Position(lat, lon)
        names = places.name(pos)
        rows.append({"content_id": cid, "source": "s", "latitude": lat, "longitude": lon,
                     **names, "place_key": places.place_key(names)})
    store.save_places(rows)
    by = lambda **kw: store.filtered_contents("m", Filter(**kw)).tolist()  # noqa: E731
    assert by(places=("lisbon",)) == [lisbon]
    assert by(places=("japan", "portugal")) == sorted([lisbon, kyoto])
    assert by(near=(35.0, 135.77, 10.0)) == [kyoto]
    assert by(near=(35.0, 135.77, 1.0)) == []
    assert store.place(unknown) is None and store.place(kyoto)["country"] == "Japan"


def test_an_existing_library_is_upgraded(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = Store(url, upgrade=False)
    cfg = alembic_config(old.engine)
    with old.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0002")  # a library from before texts and places
    assert current_revision(old.engine) == "0002"
    old.close()
    store = Store(url)  # opening upgrades it
    assert current_revision(store.engine) == head_revision()
    (cid, *_) = _library(store, 1)
    assert [c for c, _ in store.contents_needing_place("s", 0, 10)] == [cid]
    store.close()
