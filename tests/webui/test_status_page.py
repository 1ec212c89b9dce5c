"""``/status``: the counts, the index, and failed files with their reasons, as a page."""

from __future__ import annotations

import re

from PIL import Image

BAD = "<img src=x onerror=alert(1)>.jpg"  # a file name is text, never markup


def test_status_page_shows_the_counts(client, indexed):
    r = client.get("/status")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for field, value in (("files", 12), ("indexed", 12), ("pending", 0), ("failed", 0)):
        assert f'<td id="{field}">{value}</td>' in html, field
    assert "offline" in html and str(indexed.data_path) in html and "pixseek.db" in html
    assert "flat (auto); current" in html
    assert "could not be indexed" not in html  # no failures, no table
    assert "unsafe-inline" not in r.headers["Content-Security-Policy"]
    assert not re.search(r"<script(?![^>]*\ssrc=)", html) and " style=" not in html


def test_status_page_lists_failures_escaped(make_config, make_app, offline, tmp_path):
    from sqlalchemy import update

    from indexer.pipeline import Indexer
    from search.store import STATUS_FAILED, File, Store

    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(folder / "good.jpg")
    (folder / BAD).write_bytes(b"<b>not</b> an image\n" * 20)
    config = make_config(model__name="offline")
    store = Store(config.db_url)
    try:
        summary = Indexer(config, store, offline, progress=False).index([folder])
        assert (summary.encoded, summary.failed) == (1, 1)
        with store.session() as s:  # a reason may quote a decoder's message: markup too
            s.execute(update(File).where(File.status == STATUS_FAILED)
                      .values(error="cannot decode: <b>bad</b> & worse"))
    finally:
        store.close()
    client = make_app(config).test_client()
    html = client.get("/status").get_data(as_text=True)
    assert '<td id="files">2</td>' in html and '<td id="failed">1</td>' in html
    assert '<td id="indexed">1</td>' in html
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in html and "<img src=x" not in html
    assert "<td>cannot decode: &lt;b&gt;bad&lt;/b&gt; &amp; worse</td>" in html
    assert "<b>bad</b>" not in html
    assert client.get("/api/status").get_json()["failures"] == [  # the JSON is unchanged
        {"path": str(folder / BAD), "error": "cannot decode: <b>bad</b> & worse"}
    ]
