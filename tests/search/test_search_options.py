"""Engine.search: weighted terms, negatives, similar, filters, paging, order and the
relevance cut, with the offline model (real weights) over the sample photos."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search import query
from search.errors import InputError

EXIF_IFD, MAKE, MODEL, DATETIME_ORIGINAL = 0x8769, 0x010F, 0x0110, 36867


def save_with_exif(source: Path, dest: Path, camera: tuple[str, str] | None,
                   taken: str | None) -> None:
    img = Image.open(source).convert("RGB")
    exif = Image.Exif()
    if camera:
        exif[MAKE], exif[MODEL] = camera
    if taken:
        exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = taken
    img.save(dest, "JPEG", quality=90, exif=exif)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, samples, offline):
    """12 sample photos: 4 under trips/ with EXIF cameras and dates, the rest with file
    times set to known days (no EXIF date)."""
    from indexer.pipeline import Indexer
    from search.config import load_config
    from search.engine import Engine
    from search.store import Store

    root = tmp_path_factory.mktemp("search-options")
    lib = root / "photos"
    (lib / "trips").mkdir(parents=True)
    photos = [p for p in samples if not str(p.path).startswith("/usr/share")]
    exif_photos = {"chelsea_cat": (("Canon", "Canon EOS 5D"), "2021:07:04 18:30:00"),
                   "yamaha_motorcycle": (("NIKON CORPORATION", "NIKON D750"),
                                         "2019:01:02 10:00:00"),
                   "espresso_cup": (("Canon", "Canon PowerShot G7"), "2023:03:03 08:00:00"),
                   "lunar_surface": (None, None)}
    for i, photo in enumerate(photos):
        if photo.name in exif_photos:
            camera, taken = exif_photos[photo.name]
            save_with_exif(photo.path, lib / "trips" / f"{photo.name}.jpg", camera, taken)
        else:
            dest = lib / f"{photo.name}{photo.path.suffix}"
            shutil.copy2(photo.path, dest)
            when = dt.datetime(2020, 1, 1 + i, 12).timestamp()
            os.utime(dest, (when, when))
    moon = lib / "trips" / "lunar_surface.jpg"
    when = dt.datetime(2022, 5, 5, 12).timestamp()
    os.utime(moon, (when, when))
    empty = root / "empty.yaml"
    empty.write_text("{}\n")
    config = load_config(empty, overrides={"data_dir": str(root / "data"), "model.name": "offline",
                                           "indexer.decode_workers": 0}, environ={})
    store = Store(config.db_url)
    try:
        assert Indexer(config, store, offline, progress=False).index([lib]).encoded == 12
    finally:
        store.close()
    eng = Engine(config, encoder=offline)
    eng.library = lib  # type: ignore[attr-defined]
    yield eng
    eng.close()


def names(page) -> list[str]:
    return [Path(r.path).stem for r in page.results]


def search(engine, text=None, **options):
    return engine.search(query.build(text, **options))


# -- parsing ----------------------------------------------------------------------------


def test_text_terms_take_weights_and_signs():
    terms = query.text_terms("2:golden retriever + puppy - 0.5:leash")
    assert [(t.value, t.weight) for t in terms] == [
        ("golden retriever", 2.0), ("puppy", 1.0), ("leash", -0.5)]
    # A hyphen inside words, or a colon after words, is text.
    assert [t.value for t in query.text_terms("a t-shirt - black-and-white")] == [
        "a t-shirt", "black-and-white"]
    assert query.text_terms("time: 10:30")[0].value == "time: 10:30"


@pytest.mark.parametrize(("text", "message"), [
    ("0:cat", "a weight must be above 0"),
    ("500:cat", "a weight must be above 0 and at most 100"),
    ("2: + dog", "has an empty term"),
])
def test_bad_terms_are_input_errors(text, message):
    with pytest.raises(InputError, match=message):
        query.build(text)


def test_an_existing_path_wins_over_a_weight_prefix(tmp_path):
    odd = tmp_path / "2:odd.jpg"
    odd.write_bytes(b"x")
    assert query.image_term(str(odd)).weight == 1.0
    assert query.image_term(f"3:{odd}") == query.Term("image", str(odd), 3.0)
    assert query.similar_term("0.5:42") == query.Term("similar", 42, 0.5)


@pytest.mark.parametrize(("options", "message"), [
    ({"text": None}, "the query is empty"),
    ({"text": "  ", "negatives": ["people"]}, "the query is empty"),
    ({"sort": "random"}, "sort must be one of relevance, newest, oldest"),
    ({"offset": -1}, "offset must be 0 or more"),
    ({"min_score": 2.0}, "min_score is a cosine similarity"),
    ({"after": "yesterday"}, "after must be a date like 2024-06-30"),
    ({"after": "2024-02-01", "before": "2024-01-01"}, "must be earlier than before"),
    ({"negatives": [" "]}, "not: give the text to push away"),
])
def test_bad_options_are_input_errors(options, message):
    options = {"text": "a cat", **options}
    with pytest.raises(InputError, match=message):
        query.build(options.pop("text"), **options)


def test_dates_are_local_times():
    assert query.parse_date("2024-06-30", "after") == dt.datetime(2024, 6, 30)
    aware = query.parse_date("2024-06-30T12:00:00+00:00", "after")
    assert aware.tzinfo is None
    assert aware == dt.datetime(2024, 6, 30, 12, tzinfo=dt.UTC).astimezone().replace(tzinfo=None)


# -- relevance ----------------------------------------------------------------------------


def test_strong_matches_are_cut_from_weak_ones(engine):
    page = search(engine, "a cat", k=12)
    assert names(page)[0] == "chelsea_cat" and page.results[0].strong
    assert 1 <= page.strong <= 3 and not page.results[-1].strong
    flags = [r.strong for r in page.results]
    assert flags == sorted(flags, reverse=True)  # relevance order: strong ones come first


@pytest.mark.parametrize("nonsense", ["asdfghjkl qwerty", "xyzzy plugh", "zxcv bnm"])
def test_a_nonsense_query_has_no_strong_match(engine, nonsense):
    page = search(engine, nonsense, k=12)
    assert len(page.results) == 12 and page.strong == 0


def test_search_text_keeps_its_ranking(engine):
    assert [r.content_id for r in engine.search_text("a red coffee cup", 5)] == [
        r.content_id for r in search(engine, "a red coffee cup", k=5).results]


# -- terms ----------------------------------------------------------------------------------


def test_weights_decide_between_terms(engine):
    assert names(search(engine, "3:a cat + a car", k=1)) == ["chelsea_cat"]
    assert names(search(engine, "a cat + 3:a motorcycle", k=1)) == ["yamaha_motorcycle"]


def test_negative_terms_push_matches_away(engine):
    plain = names(search(engine, "an animal", k=12))
    pushed = names(search(engine, "an animal", negatives=["a cat"], k=12))
    assert pushed.index("chelsea_cat") > plain.index("chelsea_cat")
    assert names(search(engine, "an animal - a cat", k=12)) == pushed


def test_text_plus_image(engine):
    cup = engine.library / "trips" / "espresso_cup.jpg"
    both = names(search(engine, "a cat", images=[str(cup)], k=2))
    assert set(both) == {"chelsea_cat", "espresso_cup"}
    assert names(search(engine, "3:a cat", images=[f"0.2:{cup}"], k=1)) == ["chelsea_cat"]


def test_similar_by_id_or_path_leaves_the_photo_out(engine):
    cat = search(engine, "a cat", k=1).results[0]
    by_id = search(engine, similar=[cat.content_id], k=11)
    by_path = search(engine, similar=[cat.path], k=11)
    assert [r.content_id for r in by_id.results] == [r.content_id for r in by_path.results]
    assert cat.content_id not in {r.content_id for r in by_id.results}
    assert len(by_id.results) == 11 and by_id.next_offset is None


def test_similar_to_an_unknown_photo_is_an_input_error(engine, tmp_path):
    with pytest.raises(InputError, match="is not a photo in the library"):
        search(engine, similar=[999_999])
    with pytest.raises(InputError, match="is not a photo in the library"):
        search(engine, similar=[str(tmp_path)])


def test_terms_that_cancel_out(engine):
    with pytest.raises(InputError, match="cancel each other out"):
        search(engine, "a cat - a cat")


# -- filters --------------------------------------------------------------------------------


def test_folder_filter(engine):
    page = search(engine, "a photo", folders=[str(engine.library / "trips")], k=10)
    assert sorted(names(page)) == [
        "chelsea_cat", "espresso_cup", "lunar_surface", "yamaha_motorcycle"]
    # A prefix of a folder name is not the folder; one with nothing indexed is refused.
    with pytest.raises(InputError, match="^folder: no indexed photos are under .*/tri$"):
        search(engine, "a photo", folders=[str(engine.library / "tri")])


def test_camera_filter_is_a_case_insensitive_part(engine):
    assert sorted(names(search(engine, "a photo", camera="canon"))) == [
        "chelsea_cat", "espresso_cup"]
    assert names(search(engine, "a photo", camera="D750")) == ["yamaha_motorcycle"]
    assert search(engine, "a photo", camera="Leica").results == []


def test_date_filters_use_exif_then_file_time(engine):
    # EXIF: motorcycle 2019-01-02, cat 2021-07-04, cup 2023-03-03; file time: the moon
    # 2022-05-05, the other 8 in January 2020.
    page = search(engine, "a photo", after="2021-01-01", k=12)
    assert sorted(names(page)) == ["chelsea_cat", "espresso_cup", "lunar_surface"]
    page = search(engine, "a photo", after="2020-01-01", before="2021-01-01", k=12)
    assert len(page.results) == 8
    assert names(search(engine, "a photo", before="2019-01-03")) == ["yamaha_motorcycle"]
    assert names(search(engine, "a photo", before="2019-01-02")) == []  # before is exclusive


def test_a_filter_still_returns_k_results(engine):
    page = search(engine, "a cat", folders=[str(engine.library)], after="2020-01-01", k=5)
    assert len(page.results) == 5 and page.next_offset == 5


# -- paging, score floor, order --------------------------------------------------------------


def test_pages_add_up_to_the_whole_ranking(engine):
    whole = [r.content_id for r in search(engine, "a building", k=12).results]
    pages, offset = [], 0
    while offset is not None:
        page = search(engine, "a building", k=5, offset=offset)
        pages += [r.content_id for r in page.results]
        offset = page.next_offset
    assert pages == whole
    assert search(engine, "a building", k=5, offset=12).results == []


def test_min_score(engine):
    page = search(engine, "a cat", min_score=0.1, k=12)
    assert page.results and all(r.score >= 0.1 for r in page.results)
    assert len(page.results) < 12 and page.next_offset is None


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_date_order_applies_among_strong_matches(engine, order):
    relevance = search(engine, "a building", k=12).results
    page = search(engine, "a building", k=12, sort=order)
    strong = [r for r in page.results if r.strong]
    assert {r.content_id for r in strong} == {r.content_id for r in relevance if r.strong}
    assert len(strong) >= 2
    dates = [r.date for r in strong]
    assert dates == sorted(dates, reverse=order == "newest")
    weak = [r.content_id for r in page.results if not r.strong]
    assert weak == [r.content_id for r in relevance if not r.strong]


# -- filters over an approximate index ------------------------------------------------------


def test_filters_return_k_results_from_an_ivf_index(tmp_path, tiny_clip, tiny_clip_dir):
    """4000 synthetic photos under IVF: a broad filter (checked on the nearest photos) and
    narrow ones (16 and 13 photos: the index searches their ids alone) give k results,
    the same as exact search; an impossible one gives none."""
    from sqlalchemy import insert

    from search.config import load_config
    from search.engine import Engine
    from search.store import File, Store

    n, dim = 4000, tiny_clip.dim
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, dim))
    vectors = centres[rng.integers(0, 40, n)] + rng.normal(size=(n, dim)) * 0.5
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    config = load_config(empty, overrides={
        "data_dir": str(tmp_path / "data"), "model.name": str(tiny_clip_dir),
        "index.kind": "ivf"}, environ={})
    store = Store(config.db_url)
    with store.session() as s:
        ids = store.insert_contents(s, [
            {"hash": f"h{i}", "size": 1, "width": 4, "height": 3,
             "camera": "Rare One" if i % 333 == 0 else ("Canon" if i % 2 else "Pixel")}
            for i in range(n)])
        store.insert_embeddings(s, tiny_clip.model_id, ids, vectors)
        s.execute(insert(File), [
            {"path": f"/test-library/{'few' if i % 250 == 0 else 'many'}/{i}.jpg", "size": 1,
             "mtime_ns": 1, "content_id": cid, "status": "ok"}
            for i, cid in enumerate(ids)])
    store.close()
    engine = Engine(config, encoder=tiny_clip)
    try:
        assert engine.vectors.describe()["kind"] == "ivf"
        few = ["/test-library/few"]
        for options, expected in (({"camera": "canon"}, 10), ({"folders": few}, 10),
                                  ({"camera": "rare"}, 10),
                                  ({"folders": few, "camera": "canon"}, 0)):
            page = search(engine, "a cat", k=10, **options)
            exact = search(engine, "a cat", k=10, exact=True, **options)
            assert len(page.results) == expected, options
            overlap = {r.content_id for r in page.results} & {r.content_id for r in exact.results}
            assert len(exact.results) == expected and len(overlap) >= 0.9 * expected, options
    finally:
        engine.close()
