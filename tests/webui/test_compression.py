"""gzip for text responses (HTML, JSON, CSS, JavaScript), never for photos."""

from __future__ import annotations

import gzip
import json

GZIP = {"Accept-Encoding": "gzip"}


def test_json_and_html_are_gzipped(client):
    r = client.get("/api/status", headers=GZIP)
    assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(r.data))["indexed"] == 12
    assert "Accept-Encoding" in r.headers["Vary"]
    # The security headers still apply to a compressed answer.
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    page = client.get("/?q=a+cat", headers=GZIP)
    assert page.headers["Content-Encoding"] == "gzip"
    assert b"chelsea_cat.png" in gzip.decompress(page.data)
    results = client.get("/api/search?q=a+cat", headers=GZIP)
    assert json.loads(gzip.decompress(results.data))["results"]


def test_static_text_is_gzipped_and_revalidates(client):
    plain = client.get("/static/style.css")
    r = client.get("/static/style.css", headers=GZIP)
    assert r.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(r.data) == plain.data
    again = client.get("/static/style.css", headers={**GZIP, "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_without_accept_encoding_nothing_is_compressed(client):
    r = client.get("/api/status")
    assert "Content-Encoding" not in r.headers and r.get_json()["indexed"] == 12
    assert "Accept-Encoding" in r.headers["Vary"]  # caches keep the two answers apart


def test_photos_and_byte_ranges_are_never_gzipped(client):
    cid = client.get("/api/search?q=a+cat").get_json()["results"][0]["id"]
    for url in (f"/image/{cid}", f"/thumb/{cid}"):
        r = client.get(url, headers=GZIP)
        assert r.status_code == 200 and r.mimetype.startswith("image/"), url
        assert "Content-Encoding" not in r.headers, url
    plain = client.get("/static/app.js").data
    part = client.get("/static/app.js", headers={**GZIP, "Range": "bytes=0-99"})
    assert part.status_code == 206 and "Content-Encoding" not in part.headers
    assert part.data == plain[:100]
