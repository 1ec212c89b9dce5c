"""Milvus as the vector engine: the real engine through milvus-lite (a local file URI; the
same client code talks to a server by URL), following the store like FAISS does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.pipeline import Indexer
from search.engine import Engine
from search.query import SearchRequest, Term
from search.store import Filter, Store
from search.vectors import index_for

pytestmark = pytest.mark.slow  # runs milvus-lite

pytest.importorskip("pymilvus", reason="pip install -e '.[milvus]'")
pytest.importorskip("milvus_lite", reason="pip install milvus-lite")

QUERIES = ("a cat", "a cup of coffee", "an astronaut", "a rocket", "flowers")


def index(config, encoder, library: Path):
    with Store(config.db_url) as store:
        return Indexer(config, store, encoder, progress=False).index([str(library)])


def top(config, encoder, query: str, k: int = 5, folder: Path | None = None
        ) -> list[tuple[str, float]]:
    """(path, score) of the k best photos for ``query``, under ``folder`` if given."""
    where = Filter(folders=(str(folder),)) if folder else Filter()
    engine = Engine(config, encoder=encoder)
    try:
        page = engine.search(SearchRequest(terms=[Term("text", query)], where=where, k=k))
        return [(r.path, r.score) for r in page.results]
    finally:
        engine.close()


@pytest.mark.parametrize("index_type", ["FLAT", "HNSW"])
def test_both_backends_give_the_same_results(make_config, offline, library, tmp_path,
                                              index_type):
    faiss_cfg = make_config(data_dir=str(tmp_path / "faiss"))
    milvus_cfg = make_config(data_dir=str(tmp_path / "milvus"), index__backend="milvus",
                             index__milvus_index_type=index_type)
    index(faiss_cfg, offline, library)
    index(milvus_cfg, offline, library)
    assert (tmp_path / "milvus" / "vectors.milvus.db").exists()
    for query in QUERIES:
        want, got = top(faiss_cfg, offline, query), top(milvus_cfg, offline, query)
        assert [p for p, _ in got] == [p for p, _ in want], query
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


@pytest.mark.usefixtures("database")
def test_adds_removals_and_filters_follow_the_store(make_config, offline, library):
    config = make_config(index__backend="milvus")
    index(config, offline, library)
    assert top(config, offline, "a cat", 1)[0][0].endswith("chelsea_cat.png")
    (library / "chelsea_cat.png").unlink()
    (library / "sub").mkdir()
    (library / "espresso_cup.png").rename(library / "sub" / "espresso_cup.png")
    index(config, offline, library)
    paths = [p for p, _ in top(config, offline, "a cat", 20)]
    assert len(paths) == 11 and not any("chelsea" in p for p in paths)
    only_sub = top(config, offline, "a cat", 20, folder=library / "sub")
    assert [Path(p).name for p, _ in only_sub] == ["espresso_cup.png"]
    with Store(config.db_url) as store:
        model = Engine(config, encoder=offline).model_id
        vectors = index_for(store, model, config).open()
        assert vectors.count == 11 and vectors.is_current() and not vectors.rebuilt


def test_a_reader_follows_a_writer_by_marks(make_config, offline, library, tmp_path):
    config = make_config(index__backend="milvus")
    reader = Engine(config, encoder=offline)
    try:
        assert reader.search_text("a cat", 3) == []
        index(config, offline, library)
        assert reader.refresh()  # what the web UI does before each search
        assert Path(reader.search_text("a cat", 1)[0].path).name == "chelsea_cat.png"
        assert reader.vectors.count == 12
    finally:
        reader.close()


def test_a_collection_that_disagrees_is_repaired(make_config, offline, library):
    config = make_config(index__backend="milvus")
    index(config, offline, library)
    with Store(config.db_url) as store:
        model = Engine(config, encoder=offline).model_id
        vectors = index_for(store, model, config).open()
        some = vectors.search(np.eye(1, vectors.dim, dtype=np.float32), 3)[1][0]
        # Behind pixseek's back: three vectors deleted from the collection, one stray added.
        vectors.client.delete(vectors.name, ids=[int(i) for i in some])
        vectors.client.upsert(vectors.name, [{"id": 999_999, "vector": [1.0] * vectors.dim}])
        repaired = index_for(store, model, config).open()
        assert repaired.count == 12
        ids = repaired.search(np.eye(1, repaired.dim, dtype=np.float32), 50)[1][0]
        assert set(some) <= set(ids) and 999_999 not in ids


def test_an_unreachable_milvus_is_one_line(make_config, offline):
    from search.errors import ConfigError

    config = make_config(index__backend="milvus", index__milvus_uri="http://127.0.0.1:1")
    with Store(config.db_url) as store, pytest.raises(ConfigError, match="cannot reach Milvus"):
        index_for(store, "m", config)

