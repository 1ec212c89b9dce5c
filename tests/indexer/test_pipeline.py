"""Indexing a real folder with a real model into a real SQLite file and FAISS index."""

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from indexer.decode import YIELD_NICENESS
from indexer.pipeline import Indexer
from search.engine import Engine
from search.store import STATUS_FAILED, Content, Embedding, File, Store
from search.vectors import index_for


def run(config, encoder, *roots):
    store = Store(config.db_url)
    try:
        return Indexer(config, store, encoder, progress=False).index([str(r) for r in roots])
    finally:
        store.close()


def counts(config) -> dict[str, int]:
    store = Store(config.db_url)
    with store.session() as s:
        out = {
            "files": s.scalar(select(func.count(File.id))),
            "contents": s.scalar(select(func.count(Content.id))),
            "embeddings": s.scalar(select(func.count(Embedding.id))),
        }
    store.close()
    return out


def top_paths(config, encoder, query: str, k: int = 3) -> list[str]:
    engine = Engine(config, encoder=encoder)
    try:
        return [r.path for r in engine.search_text(query, k)]
    finally:
        engine.close()


@pytest.mark.usefixtures("database")  # SQLite and PostgreSQL
def test_index_then_search_finds_the_cat(make_config, offline, library):
    config = make_config()
    summary = run(config, offline, library)
    assert (summary.seen, summary.encoded, summary.failed) == (12, 12, 0)
    assert Path(top_paths(config, offline, "a cat")[0]).name == "chelsea_cat.png"


def test_second_run_reads_nothing_again(make_config, offline, library):
    config = make_config()
    run(config, offline, library)
    again = run(config, offline, library)
    assert (again.unchanged, again.encoded, again.reused, again.removed) == (12, 0, 0, 0)
    assert counts(config) == {"files": 12, "contents": 12, "embeddings": 12}


@pytest.mark.usefixtures("database")  # SQLite and PostgreSQL
def test_rename_move_and_duplicate_cost_no_encode(make_config, offline, library):
    config = make_config()
    run(config, offline, library)
    (library / "sub").mkdir()
    (library / "chelsea_cat.png").rename(library / "sub" / "renamed.png")
    shutil.copy2(library / "espresso_cup.png", library / "copy of espresso.png")
    summary = run(config, offline, library)
    assert (summary.encoded, summary.reused, summary.removed) == (0, 2, 1)
    assert counts(config) == {"files": 13, "contents": 12, "embeddings": 12}
    assert top_paths(config, offline, "a cat", 1) == [str(library / "sub" / "renamed.png")]
    engine = Engine(config, encoder=offline)
    coffee = [r for r in engine.search_text("a cup of coffee", 3) if "espresso" in r.path][0]
    assert len(coffee.paths) == 2  # one result, both paths
    engine.close()


@pytest.mark.usefixtures("database")  # SQLite and PostgreSQL
def test_deleted_file_leaves_the_results(make_config, offline, library):
    config = make_config()
    run(config, offline, library)
    (library / "chelsea_cat.png").unlink()
    summary = run(config, offline, library)
    assert (summary.removed, summary.collected) == (1, 1)
    # Its content and vector went too: the index holds 11, none of them the cat.
    assert counts(config) == {"files": 11, "contents": 11, "embeddings": 11}
    assert all("chelsea" not in p for p in top_paths(config, offline, "a cat", 12))
    assert len(top_paths(config, offline, "a cat", 12)) == 11


def test_a_move_between_folders_in_one_run_keeps_the_vector(
    make_config, offline, library, tmp_path
):
    config = make_config()
    other = tmp_path / "other"
    other.mkdir()
    run(config, offline, library, other)
    # Out of the first root scanned, into the second: the content must survive the
    # first root's removals until the second root's scan finds it again.
    (library / "chelsea_cat.png").rename(other / "cat.png")
    summary = run(config, offline, library, other)
    assert (summary.encoded, summary.reused, summary.removed, summary.collected) == (0, 1, 1, 0)
    assert top_paths(config, offline, "a cat", 1) == [str(other / "cat.png")]


@pytest.mark.usefixtures("database")  # SQLite and PostgreSQL
def test_an_edited_photo_leaves_no_old_vector(make_config, offline, library):
    config = make_config()
    run(config, offline, library)
    target = library / "chelsea_cat.png"
    Image.open(library / "espresso_cup.png").rotate(90).save(target)
    summary = run(config, offline, library)
    assert (summary.encoded, summary.collected) == (1, 1)
    assert counts(config) == {"files": 12, "contents": 12, "embeddings": 12}


def test_changed_file_is_encoded_again(make_config, offline, library):
    config = make_config()
    run(config, offline, library)
    target = library / "chelsea_cat.png"
    Image.open(library / "espresso_cup.png").save(target)  # same name, now a coffee cup
    summary = run(config, offline, library)
    assert summary.encoded == 1 and summary.unchanged == 11
    top = top_paths(config, offline, "a cup of coffee", 2)
    assert str(target) in top


def write_bad_corpus(folder: Path, good: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = good.read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image\n" * 20)
    (folder / "noise.jpg").write_bytes(os.urandom(4000))
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")
    (folder / "ünïcode name ✓.jpg").write_bytes(jpeg)


def test_bad_files_are_recorded_and_skipped(make_config, offline, tmp_path, samples):
    config = make_config()
    good = next(p.path for p in samples if p.path.suffix == ".jpg")
    folder = tmp_path / "bad"
    write_bad_corpus(folder, good)
    summary = run(config, offline, folder)
    assert (summary.encoded, summary.failed) == (1, 5)
    store = Store(config.db_url)
    with store.session() as s:
        reasons = dict(
            s.execute(select(File.path, File.error).where(File.status == STATUS_FAILED)).all()
        )
    store.close()
    reasons = {Path(p).name: e for p, e in reasons.items()}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert "not an image" in reasons["notes.png"] and "not an image" in reasons["noise.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    # Retried only when the file changes.
    again = run(config, offline, folder)
    assert (again.failed, again.unchanged) == (0, 6)
    (folder / "empty.jpg").write_bytes(good.read_bytes())
    fixed = run(config, offline, folder)
    assert (fixed.failed, fixed.reused) == (0, 1)  # same bytes as the unicode-named photo


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_recorded(make_config, offline, library):
    config = make_config()
    (library / "chelsea_cat.png").chmod(0)
    summary = run(config, offline, library)
    assert summary.failed == 1 and "ermission" in summary.failures[0]["error"]


def test_decode_workers_give_the_same_vectors(make_config, offline, library):
    inproc, workers = make_config(), make_config(data_dir=str(library.parent / "d2"))
    workers.indexer.decode_workers = 2
    run(inproc, offline, library)
    run(workers, offline, library)
    vecs = []
    for cfg in (inproc, workers):
        store = Store(cfg.db_url)
        with store.session() as s:
            rows = s.execute(
                select(Content.hash, Embedding.vector).join(Embedding).order_by(Content.hash)
            ).all()
        store.close()
        vecs.append(np.stack([np.frombuffer(v, "<f4") for _, v in rows]))
    np.testing.assert_allclose(vecs[0], vecs[1], atol=1e-6)


def test_new_model_re_encodes_into_its_own_index(make_config, offline, tiny_clip, library):
    config = make_config()
    run(config, offline, library)
    summary = run(config, tiny_clip, library)
    assert summary.encoded == 12  # same contents, new vector space
    store = Store(config.db_url)
    with store.session() as s:
        per_model = dict(
            s.execute(select(Embedding.model, func.count()).group_by(Embedding.model)).all()
        )
    store.close()
    assert per_model == {offline.model_id: 12, tiny_clip.model_id: 12}
    store = Store(config.db_url)
    a, b = (index_for(store, m.model_id, config).open() for m in (offline, tiny_clip))
    assert (a.count, b.count) == (12, 12) and a.dim != b.dim and a.folder != b.folder
    store.close()
    # Each index answers in its own model's space.
    assert Path(top_paths(config, offline, "a cat")[0]).name == "chelsea_cat.png"
    assert len(top_paths(config, tiny_clip, "a cat", 12)) == 12


@pytest.mark.usefixtures("database")  # SQLite and PostgreSQL
def test_duplicates_across_chunk_boundaries_in_flight_are_one_content(
    make_config, offline, library, monkeypatch
):
    # One file per chunk and decodes streaming through workers across chunks: a copy in the
    # next chunk is matched against the store before its original commits. The commit
    # resolves it: one content, one vector, two files.
    import indexer.pipeline as pipeline

    for photo in sorted(library.iterdir()):
        shutil.copy2(photo, photo.with_name(photo.stem + "_copy" + photo.suffix))
    monkeypatch.setattr(pipeline, "CHUNK", 1)
    monkeypatch.setattr(pipeline, "SMALL_RUN", 1)
    config = make_config(indexer__decode_workers=2, model__batch_size=3)
    summary = run(config, offline, library)
    assert (summary.seen, summary.failed) == (24, 0)
    assert (summary.encoded, summary.reused) == (12, 12)
    assert counts(config) == {"files": 24, "contents": 12, "embeddings": 12}
    again = run(config, offline, library)
    assert (again.unchanged, again.encoded) == (24, 0)
    engine = Engine(config, encoder=offline)
    cat = engine.search_text("a cat", 1)[0]
    assert sorted(Path(p).name for p in cat.paths) == ["chelsea_cat.png", "chelsea_cat_copy.png"]
    engine.close()


def test_a_failed_commit_surfaces_and_nothing_after_it_commits(make_config, offline, library):
    # The writer thread's error is raised by index(); the batches encoded after the failed
    # one are dropped, not committed out of order. The next run finishes the job.
    config = make_config(model__batch_size=3)
    store = Store(config.db_url)
    real = store.insert_embeddings
    calls = []

    def insert_then_fail(s, model, cids, vectors):
        calls.append(len(cids))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real(s, model, cids, vectors)

    store.insert_embeddings = insert_then_fail
    indexer = Indexer(config, store, offline, progress=False)
    with pytest.raises(RuntimeError, match="disk full"):
        indexer.index([str(library)])
    store.close()
    assert calls == [3, 3]
    assert counts(config) == {"files": 3, "contents": 3, "embeddings": 3}
    summary = run(config, offline, library)
    assert (summary.encoded, summary.unchanged) == (9, 3)
    assert counts(config) == {"files": 12, "contents": 12, "embeddings": 12}


def test_a_failed_encode_surfaces_and_nothing_after_it_commits(
    make_config, offline, library, monkeypatch
):
    # Batches are encoded one ahead on a thread of their own: an encode error is raised by
    # index() all the same, the batch queued behind it is dropped, and the batch before it
    # is committed. The next run finishes the job.
    config = make_config(model__batch_size=3)
    real = offline.encode_pixels
    calls = []

    def encode_then_fail(pixels):
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            raise RuntimeError("model gone")
        return real(pixels)

    monkeypatch.setattr(offline, "encode_pixels", encode_then_fail)
    store = Store(config.db_url)
    with pytest.raises(RuntimeError, match="model gone"):
        Indexer(config, store, offline, progress=False).index([str(library)])
    store.close()
    assert all(name.startswith("pixseek-encode") for name in calls)
    assert counts(config) == {"files": 3, "contents": 3, "embeddings": 3}
    monkeypatch.setattr(offline, "encode_pixels", real)
    summary = run(config, offline, library)
    assert (summary.encoded, summary.unchanged) == (9, 3)


@pytest.mark.usefixtures("database")  # SQLite and PostgreSQL
def test_one_transaction_per_batch_in_order(make_config, offline, library):
    config = make_config(model__batch_size=5)
    store = Store(config.db_url)
    indexer = Indexer(config, store, offline, progress=False)
    summary = indexer.index([str(library)])
    with store.session() as s:
        ids = s.execute(select(Embedding.id, Content.hash).join(Content)
                        .order_by(Embedding.id)).all()
    store.close()
    assert (summary.encoded, indexer.batches_committed) == (12, 3)  # 5 + 5 + 2
    assert [i for i, _ in ids] == list(range(ids[0][0], ids[0][0] + 12))


def test_decode_workers_start_while_the_model_loads_and_stop_with_the_indexer(
    make_config, offline, library
):
    """open_indexer starts the decode workers before loading the model; the first run uses
    them and shuts them down; an indexer that never ran stops them when it closes."""
    from indexer.session import open_indexer

    config = make_config(indexer__decode_workers=2)
    with open_indexer(config, encoder=offline, progress=False) as indexer:
        pool = indexer._pool
        assert pool is not None
        workers = list(pool._processes.values())
        assert len(workers) == 2  # started already, before any photo was seen
        # Beside a model on the CPU they run below its priority (decode.YIELD_NICENESS).
        assert pool.submit(os.nice, 0).result() == min(19, os.nice(0) + YIELD_NICENESS)
        summary = indexer.index([str(library)])
        assert (summary.encoded, summary.failed) == (12, 0)
        assert indexer._pool is None and not any(w.is_alive() for w in workers)
    assert counts(config) == {"files": 12, "contents": 12, "embeddings": 12}

    with open_indexer(config, encoder=offline, progress=False) as unused:
        workers = list(unused._pool._processes.values())
    assert workers and not any(w.is_alive() for w in workers)

    no_workers = make_config(data_dir=str(library.parent / "d3"), indexer__decode_workers=0)
    with open_indexer(no_workers, encoder=offline, progress=False) as indexer:
        assert indexer._pool is None
