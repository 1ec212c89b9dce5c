"""Dates, places and cameras read from a query: the API's ``understood``, ``parse=0``, the
page's chips and the CLI's ``--literal``, on the sample library with the offline model."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from search import places
from search.store import Content, Store


@pytest.fixture(scope="module")
def library(tmp_path_factory, samples, offline):
    """The 12 sample photos indexed; three taken in 2019 (one of them in Lisbon with an
    iPhone), one in Lisbon in 2021."""
    from indexer.pipeline import Indexer
    from search.config import load_config
    from tests.library import copy_library

    root = tmp_path_factory.mktemp("understand")
    folder = copy_library(root / "photos", samples)
    empty = root / "config.yaml"
    empty.write_text("{}\n")
    config = load_config(empty, environ={}, overrides={
        "data_dir": str(root / "data"), "indexer.decode_workers": 0, "model.name": "offline"})
    store = Store(config.db_url)
    try:
        Indexer(config, store, offline, progress=False).index([folder])
        ids = sorted(store.paths_for_contents(range(1, 100)))
        in_2019, lisbon_2021 = ids[:3], ids[3]
        with store.session() as s:
            s.execute(update(Content).where(Content.id.in_(in_2019))
                      .values(taken_at=dt.datetime(2019, 7, 1, 12)))
            s.execute(update(Content).where(Content.id == lisbon_2021)
                      .values(taken_at=dt.datetime(2021, 7, 1, 12)))
            s.execute(update(Content).where(Content.id == in_2019[0])
                      .values(camera="Apple iPhone 12 Pro"))
        names = places.name(places.Position(38.7223, -9.1393))
        store.save_places([{"content_id": cid, "source": "test", "latitude": 38.7223,
                            "longitude": -9.1393, **names, "place_key": places.place_key(names)}
                           for cid in (in_2019[0], lisbon_2021)])
    finally:
        store.close()
    return config, in_2019, lisbon_2021


@pytest.fixture(scope="module")
def client(library, offline):
    from search.engine import Engine
    from webui import create_app

    engine = Engine(library[0], encoder=offline)
    app = create_app(library[0], engine)
    app.testing = True
    yield app.test_client()
    engine.close()


def ids(body: dict) -> set[int]:
    return {r["id"] for r in body["results"]}


def test_api_answers_what_it_understood(client, library):
    _, in_2019, lisbon_2021 = library
    body = client.get("/api/search?q=a photo in 2019&k=50").get_json()
    assert body["understood"] == {"text": "a photo", "after": "2019-01-01",
                                  "before": "2020-01-01", "places": [], "cameras": []}
    assert ids(body) == set(in_2019)
    body = client.get("/api/search?q=a photo in Lisbon&k=50").get_json()
    assert body["understood"]["places"] == ["Lisbon"] and body["understood"]["text"] == "a photo"
    assert ids(body) == {in_2019[0], lisbon_2021}
    body = client.get("/api/search?q=a photo taken with an iPhone&k=50").get_json()
    assert body["understood"]["cameras"] == ["iPhone"] and ids(body) == {in_2019[0]}
    # All of q was a place and a date: nothing left, its words as typed rank the photos.
    body = client.get("/api/search?q=Lisbon 2019&k=50").get_json()
    assert body["understood"]["text"] == "" and body["understood"]["places"] == ["Lisbon"]
    assert ids(body) == {in_2019[0]}
    # A place the library has no photo in is a word of the text.
    body = client.get("/api/search?q=the hotel in Paris&k=50").get_json()
    assert body["understood"] == {"text": "the hotel in Paris", "after": None, "before": None,
                                  "places": [], "cameras": []}
    assert len(body["results"]) == 12


def test_parse_0_searches_the_words_as_typed(client):
    body = client.get("/api/search?q=a photo in 2019&k=50&parse=0").get_json()
    assert body["understood"] is None and len(body["results"]) == 12
    assert client.get("/api/search?q=cat&parse=maybe").status_code == 400


def test_explicit_fields_win(client, library):
    _, in_2019, lisbon_2021 = library
    # "in 2021" and before=2020-01-01 contradict: the explicit field wins.
    body = client.get("/api/search?q=a photo in 2021&before=2020-01-01&k=50").get_json()
    assert body["understood"]["after"] is None and body["understood"]["before"] is None
    assert ids(body) == set(in_2019)
    body = client.get("/api/search?q=a photo in Lisbon&place=Portugal&k=50").get_json()
    assert body["understood"]["places"] == [] and ids(body) == {in_2019[0], lisbon_2021}


def test_page_shows_removable_chips(client):
    html = client.get("/?q=a photo in Lisbon in 2019").get_data(as_text=True)
    assert 'id="understood"' in html and "in Lisbon" in html and "2019-01-01" in html
    # Removing the date keeps the place, as an explicit field, and the words as read.
    date_chip = html.split('data-part="date" href="')[1].split('"')[0].replace("&amp;", "&")
    assert "parse=0" in date_chip and "place=Lisbon" in date_chip and "after" not in date_chip
    assert "q=a+photo" in date_chip
    page = client.get(date_chip).get_data(as_text=True)
    assert 'id="understood"' not in page and "2 photos" in page
    assert 'id="understood"' not in client.get("/?q=a red bicycle").get_data(as_text=True)
    html = client.get("/?q=Lisbon 2019").get_data(as_text=True)
    place_chip = html.split('data-part="place" href="')[1].split('"')[0].replace("&amp;", "&")
    assert "q=Lisbon+2019" in place_chip and "after=2019-01-01" in place_chip
    assert client.get(place_chip).status_code == 200


def test_cli_prints_what_it_understood_and_literal_turns_it_off(library):
    from pixseek.cli import cli

    config, in_2019, _ = library
    args = ["--data-dir", str(config.data_path), "--model", "offline", "search"]
    runner = CliRunner()
    found = runner.invoke(cli, [*args, "a photo in 2019", "--json", "-k", "50"])
    assert found.exit_code == 0, found.output
    assert "understood: text 'a photo', after 2019-01-01, before 2020-01-01" in found.stderr
    assert found.stdout.count('"id"') == 3
    literal = runner.invoke(cli, [*args, "a photo in 2019", "--json", "-k", "50", "--literal"])
    assert literal.exit_code == 0 and "understood" not in literal.stderr
    assert literal.stdout.count('"id"') == 12
    plain = runner.invoke(cli, [*args, "a red bicycle", "-k", "2"])
    assert plain.exit_code == 0 and "understood" not in plain.stderr
    explicit = runner.invoke(cli, [*args, "a photo in 2019", "--json", "-k", "50",
                                   "--before", "2019-01-01"])
    assert explicit.exit_code == 0 and explicit.stdout.strip() == "[]"


def test_the_vocabulary_is_the_librarys(library, offline):
    from search import understand

    store = Store(library[0].db_url)
    try:
        found = understand.vocabulary(store, offline.model_id)
        assert {"Lisbon", "Portugal"} <= set(found.places)
        assert found.cameras == ("Apple iPhone 12 Pro",)
        assert understand.vocabulary(store, "another-model") == found  # same photos
    finally:
        store.close()
