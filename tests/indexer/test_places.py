"""Where a photo was taken: EXIF GPS written by the test, read after the CLIP pass, named
offline, and searched by place name and by distance; bad tags are ignored, never fatal."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational
from sqlalchemy import delete

from indexer.pipeline import Indexer
from search import query
from search.engine import Engine
from search.errors import InputError
from search.store import ContentPlace, Store

CITIES = {  # name: (lat, lon, country)
    "lisbon": (38.7223, -9.1393, "Portugal"),
    "kyoto": (35.0116, 135.7681, "Japan"),
    "nairobi": (-1.2921, 36.8219, "Kenya"),
    "montreal": (45.5017, -73.5673, "Canada"),
    "lyon": (45.7640, 4.8357, "France"),
}


def dms(value: float) -> tuple:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = (value - d - m / 60) * 3600
    return (IFDRational(d), IFDRational(m), IFDRational(round(s * 100), 100))


def gps_photo(path: Path, background: Path, gps: dict | None) -> Path:
    with Image.open(background) as im:
        photo = im.convert("RGB").resize((320, 240))
    exif = Image.Exif()
    if gps is not None:
        exif[ExifTags.IFD.GPSInfo] = gps
    photo.save(path, exif=exif.tobytes())
    return path


def position(lat: float, lon: float) -> dict:
    return {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W",
            4: dms(lon), 5: b"\x00", 6: IFDRational(30)}


BAD = {
    "no_ref": {2: dms(38.7), 4: dms(9.1)},
    "nan": {1: "N", 2: (IFDRational(38), IFDRational(43), IFDRational(0, 0)), 3: "E",
            4: dms(9.1)},  # 0/0: the only NaN a rational can hold
    "odd_ref": {1: "Q", 2: dms(38.7), 3: "E", 4: dms(9.1)},
    "out_of_range": {1: "N", 2: (IFDRational(123), IFDRational(0), IFDRational(0)),
                     3: "E", 4: dms(9.1)},
    "zero_denominator": {1: "N", 2: (IFDRational(38), IFDRational(1, 0), IFDRational(0)),
                         3: "E", 4: dms(9.1)},
}


@pytest.fixture
def located(tmp_path, samples, make_config, offline):
    folder = tmp_path / "trip"
    folder.mkdir()
    backgrounds = [p.path for p in samples if not str(p.path).startswith("/usr/share")]
    for i, (city, (lat, lon, _)) in enumerate(CITIES.items()):
        gps_photo(folder / f"{city}.jpg", backgrounds[i], position(lat, lon))
    for i, (name, gps) in enumerate(BAD.items()):
        gps_photo(folder / f"bad_{name}.jpg", backgrounds[5 + i], gps)
    gps_photo(folder / "no_gps.jpg", backgrounds[len(BAD) + 5], None)
    config = make_config()
    store = Store(config.db_url)
    summary = Indexer(config, store, offline, progress=False).index([str(folder)])
    engine = Engine(config, offline)
    yield engine, store, summary, folder
    engine.close()
    store.close()


def names(engine: Engine, **options) -> set[str]:
    page = engine.search(query.build("a photo", k=50, **options))
    return {Path(r.path).stem for r in page.results}


def test_photos_are_found_by_city_country_and_distance(located):
    engine, store, summary, _ = located
    assert summary.encoded == summary.places_read == 6 + len(BAD)
    for city, (lat, lon, country) in CITIES.items():
        assert names(engine, places=[city.upper()]) == {city}, city
        assert names(engine, places=[country]) == {city}, country
        assert names(engine, near=f"{lat + 0.01},{lon - 0.01}") == {city}, city
    assert names(engine, places=["Lisbon", "kyoto"]) == {"lisbon", "kyoto"}  # repeated: OR
    assert names(engine, places=["Montréal"]) == {"montreal"}  # accents do not matter
    assert not names(engine, places=["Atlantis"])
    # 'near' counts kilometres: Lyon and Montreal are not within 50 km of Lisbon.
    assert names(engine, near="38.7223,-9.1393,50") == {"lisbon"}


def test_photos_without_gps_or_with_bad_tags_never_match_a_place(located):
    engine, store, _, _ = located
    everything = names(engine)
    placed = set()
    for _lat, _lon, country in CITIES.values():
        placed |= names(engine, places=[country])
    assert everything - placed == {"no_gps", *(f"bad_{n}" for n in BAD)}
    assert not names(engine, near="0,0,20000") - set(CITIES)  # the whole earth: only tagged
    facets = store.facets()["places"]
    assert {c["name"] for c in facets["countries"]} == {c[2] for c in CITIES.values()}
    assert {"Kyoto", "Nairobi", "Lisbon"} <= {c["name"] for c in facets["cities"]}


def test_a_library_from_before_places_is_backfilled_without_re_encoding(located, offline):
    engine, store, _, folder = located
    with store.session() as s:
        s.execute(delete(ContentPlace))
    again = Indexer(engine.config, store, offline, progress=False).index([str(folder)])
    assert again.encoded == 0 and again.places_read == 6 + len(BAD)
    place = store.place(store.content_for_path(str(folder / "kyoto.jpg")))
    assert place["city"] == "Kyoto" and place["country"] == "Japan"
    assert math.isclose(place["latitude"], 35.0116, abs_tol=1e-3)


@pytest.mark.parametrize("near", ["38.7", "91,0", "0,181", "a,b", "1,2,0", "1,2,-5", "nan,1"])
def test_a_bad_near_is_one_clear_error(near):
    with pytest.raises(InputError, match="near"):
        query.build("a photo", near=near)
