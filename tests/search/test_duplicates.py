"""Near-duplicates (search.duplicates): groups of re-saved, resized, cropped and brightened
copies of real photos, the photo each group keeps, and collapsing search results."""

from __future__ import annotations

import datetime as dt
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.duplicates import make_copies
from search import duplicates, query
from search.duplicates import Member, keeper_key

# One of each edit the issue names: a JPEG re-save, a resize, a crop, a brightness edit.
KINDS = ["jpeg40", "third", "crop12corner", "brighter"]


def original_of(path: str | Path) -> str:
    """The original photo a file was made from (``<name>__<kind>.jpg`` -> ``<name>``)."""
    return Path(path).stem.split("__")[0]


@pytest.fixture(scope="module")
def dup_library(tmp_path_factory, samples, offline):
    """The 12 sample photos, four copies of each, and scikit-image's motorcycle_right (the
    next frame of yamaha_motorcycle, a real burst), indexed with the offline model."""
    from indexer.pipeline import Indexer
    from search.config import load_config
    from search.samples import _source_dir
    from search.store import Store

    root = tmp_path_factory.mktemp("duplicates")
    lib = root / "photos"
    lib.mkdir()
    for photo in samples:
        if str(photo.path).startswith("/usr/share"):
            continue
        shutil.copy2(photo.path, lib / f"{photo.name}{photo.path.suffix}")
        make_copies(photo.path, lib, photo.name, KINDS)
    right = _source_dir("skimage") / "data" / "motorcycle_right.png"
    shutil.copy2(right, lib / "yamaha_motorcycle__burst.png")
    empty = root / "empty.yaml"
    empty.write_text("{}\n")
    config = load_config(empty, overrides={"data_dir": str(root / "data"), "model.name": "offline",
                                           "indexer.decode_workers": 0, "ocr.enabled": False},
                         environ={})
    store = Store(config.db_url)
    try:
        summary = Indexer(config, store, offline, progress=False).index([lib])
    finally:
        store.close()
    assert summary.encoded == 12 * (1 + len(KINDS)) + 1 and summary.failed == 0
    return config, lib


@pytest.fixture(scope="module")
def engine(dup_library, offline):
    from search.engine import Engine

    config, _ = dup_library
    eng = Engine(config, encoder=offline)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def groups(engine):
    return duplicates.find_groups(engine.store, engine.vectors, engine.model_id)


def pair_precision_recall(groups, paths: list[str]) -> tuple[float, float]:
    """Pair precision and recall of ``groups`` against the truth: same original."""
    group_of = {m.path: g for g, group in enumerate(groups)
                for m in [group.keep, *group.others]}
    tp = fp = fn = 0
    for a, b in combinations(paths, 2):
        same = original_of(a) == original_of(b)
        grouped = a in group_of and group_of[a] == group_of.get(b)
        tp += same and grouped
        fp += grouped and not same
        fn += same and not grouped
    return tp / max(1, tp + fp), tp / max(1, tp + fn)


def test_thresholds_per_model():
    from search.encoders.offline import MODEL_ID

    assert duplicates.threshold_for(MODEL_ID) == duplicates.OFFLINE_THRESHOLD
    assert duplicates.calibrated(MODEL_ID)
    assert duplicates.threshold_for("openai/clip-vit-base-patch32") == 0.95
    assert not duplicates.calibrated("openai/clip-vit-base-patch32")
    assert 0.9 < duplicates.OFFLINE_THRESHOLD < 1


def test_copies_group_with_their_original_and_nothing_else(groups, dup_library):
    _, lib = dup_library
    paths = sorted(str(p) for p in lib.iterdir())
    precision, recall = pair_precision_recall(groups, paths)
    assert precision >= 0.95 and recall >= 0.9, (precision, recall)
    # In fact every copy (and the real burst) is found, and no two photos are confused.
    assert len(groups) == 12
    for group in groups:
        members = [group.keep, *group.others]
        assert {original_of(m.path) for m in members} == {original_of(group.keep.path)}
        assert all(m.similarity >= duplicates.OFFLINE_THRESHOLD - 0.1 for m in group.others)
        assert [m.similarity for m in group.others] == sorted(
            (m.similarity for m in group.others), reverse=True)


def test_each_group_keeps_the_most_pixels_then_the_largest_file(groups, dup_library):
    _, lib = dup_library

    def rank(path: str) -> tuple[int, int]:
        with Image.open(path) as im:
            return im.width * im.height, Path(path).stat().st_size

    originals_kept = 0
    for group in groups:
        members = [group.keep, *group.others]
        best = max(members, key=lambda m: rank(m.path))
        assert group.keep.path == best.path
        originals_kept += "__" not in Path(group.keep.path).name
    # The originals are the largest: kept in every group but where a brightened copy
    # (same pixels, JPEG) came out larger than a small JPEG original.
    assert originals_kept >= 10
    by_name = {original_of(g.keep.path): g for g in groups}
    # The resized copy is never the keeper; the real burst's original (a larger file) is.
    assert Path(by_name["yamaha_motorcycle"].keep.path).name == "yamaha_motorcycle.png"
    assert Path(by_name["chelsea_cat"].keep.path).name == "chelsea_cat.png"


def test_keeper_order_is_pixels_then_size_then_date():
    def member(path, w, h, size, day):
        return Member(0, path, [path], w, h, size, dt.datetime(2020, 1, day) if day else None)

    big_small_file = member("/a", 4000, 3000, 1_000, 9)
    small_big_file = member("/b", 2000, 1500, 9_000, 1)
    same_pixels_bigger = member("/c", 4000, 3000, 2_000, 9)
    same_but_older = member("/d", 4000, 3000, 2_000, 2)
    undated = member("/e", 4000, 3000, 2_000, None)
    ordered = sorted([small_big_file, big_small_file, undated, same_pixels_bigger,
                      same_but_older], key=keeper_key)
    assert [m.path for m in ordered] == ["/d", "/c", "/e", "/a", "/b"]


def test_small_batches_and_few_neighbours_find_the_same_groups(engine, groups):
    """Each photo asks the index for its k nearest only; union-find joins the rest."""
    few = duplicates.find_groups(engine.store, engine.vectors, engine.model_id, k=3, batch=7)
    as_sets = lambda gs: sorted(sorted(m.id for m in [g.keep, *g.others]) for g in gs)  # noqa: E731
    assert as_sets(few) == as_sets(groups)


def test_json_shape(groups):
    payload = [g.as_dict() for g in groups]
    for group in payload:
        assert {"id", "path"} <= group["keep"].keys() and "similarity" not in group["keep"]
        for other in group["others"]:
            assert {"id", "path", "similarity"} <= other.keys()
            assert -1 <= other["similarity"] <= 1


def test_a_lower_threshold_confuses_more_and_a_higher_one_misses_more(engine, dup_library):
    _, lib = dup_library
    paths = sorted(str(p) for p in lib.iterdir())
    store, index, model = engine.store, engine.vectors, engine.model_id
    loose = duplicates.find_groups(store, index, model, 0.5)
    strict = duplicates.find_groups(store, index, model, 0.999)
    assert pair_precision_recall(loose, paths)[0] < 0.95
    assert pair_precision_recall(strict, paths)[1] < 0.9


# -- collapsing search results -------------------------------------------------------------


def names(page) -> list[str]:
    return [Path(r.path).name for r in page.results]


def test_search_results_show_one_photo_per_group(engine):
    page = engine.search(query.build("a cat", k=5))
    assert len(page.results) == 5
    assert [original_of(n) for n in names(page)].count("chelsea_cat") == 1
    cat = next(r for r in page.results if original_of(r.path) == "chelsea_cat")
    assert len(cat.duplicates) == len(KINDS)
    folded = engine.store.paths_for_contents(cat.duplicates)
    assert {original_of(p[0]) for p in folded.values()} == {"chelsea_cat"}
    assert cat.as_dict()["duplicates"] == cat.duplicates
    # Five different photos on the page.
    assert len({original_of(n) for n in names(page)}) == 5

    every = engine.search(query.build("a cat", k=5, collapse=False))
    assert [original_of(n) for n in names(every)] == ["chelsea_cat"] * 5
    assert all(r.duplicates == [] for r in every.results)
    assert every.results[0].as_dict()["duplicates"] == []


def test_collapsed_pages_follow_each_other(engine):
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = engine.search(query.build("a photo", k=5, offset=offset))
        for r in page.results:
            seen += [r.content_id, *r.duplicates]
        offset = page.next_offset
    # Every photo once, as a result or folded into one; 13 results for 13 photos shown.
    assert sorted(seen) == sorted(set(seen)) and len(seen) == engine.vectors.count


def test_date_order_shows_each_group_once(engine, groups):
    page = engine.search(query.build("a cat", k=20, sort="newest"))
    group_of = {m.id: g for g, group in enumerate(groups) for m in [group.keep, *group.others]}
    shown = [group_of.get(r.content_id, -r.content_id) for r in page.results]
    assert len(shown) == len(set(shown))
    for r in page.results:
        assert {group_of.get(d) for d in r.duplicates} <= {group_of.get(r.content_id)}
    # The whole library fits in a date-ordered fetch: one result per group, and one per
    # photo in none (a resize to a third of 400 x 300 px can lose its group).
    alone = engine.vectors.count - len(group_of)
    assert len(page.results) == len(groups) + alone


class _Fake:
    def __init__(self, cid: int, matched: list[str]):
        self.content_id, self.matched, self.duplicates = cid, matched, []


class _Vectors:
    def __init__(self, vectors: dict[int, np.ndarray]):
        self._v = vectors

    def vectors(self, _model, ids):
        return {i: self._v[i] for i in ids if i in self._v}


def test_collapse_keeps_results_found_by_their_text_and_pages_ahead():
    a = np.array([1, 0, 0], np.float32)
    near = np.array([0.999, 0.0447, 0], np.float32)
    far = np.array([0, 1, 0], np.float32)
    store = _Vectors({1: a, 2: near, 3: near, 4: far, 5: far})
    store._v[7] = near
    ranked = [_Fake(1, ["image"]), _Fake(2, ["image", "text"]), _Fake(3, ["image"]),
              _Fake(4, ["image"]), _Fake(5, ["image"]), _Fake(6, ["text"]),
              _Fake(7, ["text"])]
    folded, more = duplicates.collapse(ranked, store, "m", end=10, threshold=0.99)
    # 2 and 7 matched the query's words: they stay (7 looks like 2 and 3, and may say
    # something else); 3 folds into 1; 5 into 4; 6 has no vector: its own result.
    assert [r.content_id for r in folded] == [1, 2, 4, 6, 7]
    assert folded[0].duplicates == [3] and folded[2].duplicates == [5]
    assert more is False
    # A page of 2: the third group says more follow; and a fetch that folded into fewer
    # results than asked says so too when it was a full fetch (more lie past it).
    folded, more = duplicates.collapse(ranked, store, "m", end=2, threshold=0.99)
    assert [r.content_id for r in folded][:2] == [1, 2] and more
    n = 2 + duplicates.lookahead(2)  # what a search fetches for a page of one
    full = [_Fake(i, ["image"]) for i in range(1, n + 1)]
    store = _Vectors({i: a for i in range(1, n + 1)})
    folded, more = duplicates.collapse(full, store, "m", end=1, threshold=0.99)
    assert [r.content_id for r in folded] == [1] and len(folded[0].duplicates) == n - 1
    assert more  # the fetch was full: more lie past it
    folded, more = duplicates.collapse(full[:-1], store, "m", end=1, threshold=0.99)
    assert not more  # the index had no more to give


def test_roots_and_relative_paths(tmp_path):
    roots = [Path("/photos"), Path("/photos/2020"), Path("/other")]
    assert duplicates.relative_path("/photos/2020/a/b.jpg", roots) == Path("a/b.jpg")
    assert duplicates.relative_path("/photos/x.jpg", roots) == Path("x.jpg")
    assert duplicates.relative_path("/elsewhere/y.jpg", roots) == Path("elsewhere/y.jpg")


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_an_approximate_index_is_scanned_at_its_own_depth_and_finds_the_same(
        engine, groups, tmp_path, kind):
    """IVF and HNSW are probed at SCAN_DEPTH from their codes, the close candidates scored
    exactly: the same groups as the exact index."""
    from search.vectors.faiss_index import FaissIndex

    index = FaissIndex(engine.store, engine.model_id, tmp_path / "data", kind=kind).open()
    index.persist(force=True)  # 61 photos would stay in the exact in-memory delta
    assert index.describe()["kind"] == kind and len(index.delta) == 0
    batch = next(engine.store.iter_embeddings(engine.model_id, chunk=8))[2]
    assert index.scan(batch, 4, duplicates.SCAN_DEPTH) is not None  # the scan path, not search()
    exact = FaissIndex(engine.store, engine.model_id, tmp_path / "flat", kind="flat").open()
    exact.persist(force=True)
    assert exact.scan(batch, 4, duplicates.SCAN_DEPTH) is None  # nothing to scan: search()
    found = duplicates.find_groups(engine.store, index, engine.model_id)
    as_sets = lambda gs: sorted(sorted(m.id for m in [g.keep, *g.others]) for g in gs)  # noqa: E731
    assert as_sets(found) == as_sets(groups)
    for a, b in zip(found, groups, strict=True):
        assert [round(m.similarity, 5) for m in a.others] == [
            round(m.similarity, 5) for m in b.others]  # exact cosines, not the codes'
