"""The search API's options (paging, filters, negatives, similar, order), the photo and
facet endpoints, and one clear 400 for a bad value of each field."""

from __future__ import annotations

import io
from pathlib import Path

import pytest


def search(client, **params):
    r = client.get("/api/search", query_string=params)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def names(body: dict) -> list[str]:
    return [Path(r["path"]).stem for r in body["results"]]


def test_answer_shape_and_paging(client):
    first = search(client, q="a cat", k=5)
    assert set(first) >= {"query", "results", "offset", "next_offset"}
    assert first["offset"] == 0 and first["next_offset"] == 5
    assert all(isinstance(r["strong"], bool) for r in first["results"])
    ids = [r["id"] for r in first["results"]]
    while first["next_offset"] is not None:
        first = search(client, q="a cat", k=5, offset=first["next_offset"])
        ids += [r["id"] for r in first["results"]]
    assert len(ids) == len(set(ids)) == 12 and first["offset"] == 10


def test_strong_flag_and_nonsense(client):
    cat = search(client, q="a cat", k=12)["results"]
    assert cat[0]["strong"] and not cat[-1]["strong"]
    assert not any(r["strong"] for r in search(client, q="asdfghjkl qwerty")["results"])


def test_not_similar_and_sort(client):
    cat = search(client, q="a cat", k=1)["results"][0]
    similar = search(client, similar=cat["id"], k=11)
    assert cat["id"] not in {r["id"] for r in similar["results"]} and similar["query"] is None
    pushed = search(client, q="an animal", **{"not": "a cat"}, k=12)
    assert names(pushed).index("chelsea_cat") > names(search(client, q="an animal", k=12)).index(
        "chelsea_cat")
    newest = search(client, q="a building", sort="newest", k=12)["results"]
    strong = [r["date"] for r in newest if r["strong"]]
    assert strong == sorted(strong, reverse=True)


def test_filters(client, library):
    assert search(client, q="a cat", folder=str(library))["results"]
    # A folder with nothing indexed under it is a mistake said aloud, not an empty answer:
    # the API, the page and the CLI (tests/e2e) all refuse it by name.
    for folder in (library / "elsewhere", Path("/nonexistent"), Path(str(library) + "x")):
        r = client.get("/api/search", query_string={"q": "a cat", "folder": str(folder)})
        assert r.status_code == 400
        assert r.get_json() == {"error": f"folder: no indexed photos are under {folder}"}
    html = client.get("/?q=a+cat&folder=/nonexistent").get_data(as_text=True)
    assert "no indexed photos are under /nonexistent" in html
    assert search(client, q="a cat", camera="no such camera")["results"] == []
    assert search(client, q="a cat", after="2000-01-01", before="2100-01-01", k=12)[
        "next_offset"] is None
    low = search(client, q="a cat", min_score=0.2, k=12)["results"]
    assert low and all(r["score"] >= 0.2 for r in low)


def test_post_takes_the_same_fields(client, library):
    data = (library / "espresso_cup.png").read_bytes()
    r = client.post("/api/search?k=2&offset=1", data={
        "image": (io.BytesIO(data), "cup.png"), "q": "a cup", "image_weight": "2"},
        content_type="multipart/form-data")
    body = r.get_json()
    assert r.status_code == 200 and body["offset"] == 1 and len(body["results"]) == 2
    assert "espresso_cup" not in names(body)  # it is result 0, on the page before


@pytest.mark.parametrize(("params", "message"), [
    ({"q": "cat", "offset": "-1"}, "offset must be a whole number from 0"),
    ({"q": "cat", "offset": "two"}, "offset must be a whole number"),
    ({"q": "cat", "min_score": "high"}, "min_score must be a number from -1 to 1"),
    ({"q": "cat", "min_score": "nan"}, "min_score must be a number from -1 to 1"),
    ({"q": "cat", "min_score": "3"}, "min_score must be a number from -1 to 1"),
    ({"q": "cat", "sort": "random"}, "sort must be one of relevance, newest, oldest"),
    ({"q": "cat", "after": "soon"}, "after must be a date like 2024-06-30"),
    ({"q": "cat", "before": "2024-13-01"}, "before must be a date"),
    ({"q": "cat", "after": "2024-01-02", "before": "2024-01-01"}, "must be earlier than before"),
    ({"similar": "999999"}, "is not a photo in the library"),
    ({"similar": "/etc/passwd"}, "is not a photo in the library"),
    ({"q": "cat", "exact": "maybe"}, "exact must be 1 or 0"),
    ({"q": "0:cat"}, "a weight must be above 0"),
    ({"q": "cat - cat"}, "cancel each other out"),
    ({"not": "people"}, "the query is empty"),
])
def test_bad_values_are_one_clear_400(client, params, message):
    r = client.get("/api/search", query_string=params)
    assert r.status_code == 400, r.get_json()
    assert set(r.get_json()) == {"error"} and message in r.get_json()["error"]


def test_photo_details(client, library):
    cat = search(client, q="a cat", k=1)["results"][0]
    r = client.get(f"/api/photos/{cat['id']}")
    info = r.get_json()
    assert r.status_code == 200
    assert info["paths"] == [str(library / "chelsea_cat.png")] and info["format"] == "PNG"
    assert (info["width"], info["height"]) == (451, 300)
    assert info["size"] == (library / "chelsea_cat.png").stat().st_size
    assert info["date_source"] == "file" and info["taken_at"] is None
    assert client.get("/api/photos/999999").status_code == 404


def test_facets(client, library):
    facets = client.get("/api/facets").get_json()
    assert facets["folders"] == [{"path": str(library), "count": 12}]
    assert facets["cameras"] == []
    assert facets["dates"]["oldest"] <= facets["dates"]["newest"]


def test_warm_up_loads_the_model_before_the_first_query(indexed):
    from search.engine import Engine
    from webui import create_app, service

    engine = Engine(indexed)  # no encoder yet: serve's engine loads it on demand
    try:
        app = create_app(indexed, engine)
        assert not engine.model_loaded
        service.warm_up(app)
        assert engine.model_loaded and engine._text_reference is not None
        body = app.test_client().get("/api/search?q=a+cat&k=1").get_json()
        assert Path(body["results"][0]["path"]).name == "chelsea_cat.png"
    finally:
        engine.close()
