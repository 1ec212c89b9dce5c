"""Indexed photos and thumbnails: served by content id only (architecture invariant 6)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image


def content_id(client, name: str) -> int:
    # collapse=0: some test photos are near-duplicates of each other by construction
    for r in client.get("/api/search?q=photo&k=50&collapse=0").get_json()["results"]:
        if Path(r["path"]).name == name:
            return r["id"]
    raise AssertionError(f"{name} is not indexed")


def test_image_by_id_serves_the_indexed_file(client, library):
    cid = content_id(client, "chelsea_cat.png")
    r = client.get(f"/image/{cid}")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert r.data == (library / "chelsea_cat.png").read_bytes()
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    jpg = content_id(client, "launch_pad_rocket.jpg")
    assert client.get(f"/image/{jpg}").mimetype == "image/jpeg"
    # Conditional requests work (the browser revalidates instead of downloading again).
    again = client.get(f"/image/{cid}", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_thumbnail_is_a_small_cached_jpeg(client, indexed):
    cid = content_id(client, "chelsea_cat.png")
    r = client.get(f"/thumb/{cid}")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.data))
    assert thumb.format == "JPEG" and thumb.mode == "RGB" and thumb.size == (320, 213)
    cached = list((indexed.data_path / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == r.data
    assert client.get(f"/thumb/{cid}").data == r.data  # served from the cache
    assert client.get(f"/thumb/{cid}", headers={"If-None-Match": r.headers["ETag"]}).status_code \
        == 304


def test_thumbnail_follows_exif_orientation(make_config, make_app, offline, tmp_path):
    from indexer.pipeline import Indexer
    from search.store import Store

    folder = tmp_path / "rotated"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a landscape file shown as portrait
    Image.new("RGB", (800, 400), (200, 30, 30)).save(folder / "turned.jpg", exif=exif)
    config = make_config(model__name="offline")
    Indexer(config, Store(config.db_url), offline, progress=False).index([folder])
    client = make_app(config).test_client()
    cid = client.get("/api/search?q=red").get_json()["results"][0]["id"]
    thumb = Image.open(io.BytesIO(client.get(f"/thumb/{cid}").data))
    assert thumb.size == (160, 320)


def test_unknown_id_is_404(client):
    for url in ("/image/999999", "/thumb/999999", "/image/0", f"/image/{2**63 - 1}",
                f"/image/{2**70}", "/thumb/123456789012345678901234567890"):
        assert client.get(url).status_code == 404, url


def test_deleted_file_is_404(client, library):
    cid = content_id(client, "espresso_cup.png")
    (library / "espresso_cup.png").unlink()
    assert client.get(f"/image/{cid}").status_code == 404
    assert client.get(f"/thumb/{cid}").status_code == 404


def test_duplicate_is_served_from_a_path_that_still_exists(client, library, indexed, offline):
    from indexer.pipeline import Indexer
    from search.store import Store

    copy = library / "zz-copy-of-cat.png"
    copy.write_bytes((library / "chelsea_cat.png").read_bytes())
    Indexer(indexed, Store(indexed.db_url), offline, progress=False).index([library])
    cid = content_id(client, "chelsea_cat.png")
    (library / "chelsea_cat.png").unlink()  # the first path is gone, the copy is not
    r = client.get(f"/image/{cid}")
    assert r.status_code == 200 and r.data == copy.read_bytes()


@pytest.mark.parametrize(
    "url",
    [
        "/image/../../etc/passwd",
        "/image/..%2F..%2Fetc%2Fpasswd",
        "/image/%2e%2e/%2e%2e/etc/passwd",
        "/image/abc",
        "/image/-1",
        "/image/1.5",
        "/image/1/../../../etc/passwd",
        "/image//etc/passwd",
        "/thumb/../../etc/passwd",
        "/thumb/abc",
        "/image?path=/etc/passwd",
        "/static/../../../../etc/passwd",
        "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/%2e%2e/pixseek.db",
    ],
)
def test_path_traversal_never_serves_a_file(client, url):
    r = client.get(url)
    assert r.status_code in (400, 404)
    assert b"root:" not in r.data and not r.mimetype.startswith("image/")


def test_a_path_in_the_query_string_is_ignored(client, library):
    cid = content_id(client, "chelsea_cat.png")
    r = client.get(f"/image/{cid}", query_string={"path": "/etc/passwd", "file": "/etc/passwd"})
    assert r.data == (library / "chelsea_cat.png").read_bytes()


def index_folder(make_config, offline, folder: Path):
    """A Config whose store holds ``folder``, indexed with the offline encoder."""
    from indexer.pipeline import Indexer
    from search.store import Store

    config = make_config(model__name="offline")
    store = Store(config.db_url)
    try:
        Indexer(config, store, offline, progress=False).index([folder])
    finally:
        store.close()
    return config


def content_hash(config, cid: int) -> str:
    from search.store import Content, Store

    store = Store(config.db_url)
    try:
        with store.session() as s:
            return s.get(Content, cid).hash
    finally:
        store.close()


NAMES = ["a\nb.jpg", "café ☕.jpg", 'say "cheese".jpg', "back\\slash\ttab.jpg"]


def test_image_serves_any_file_name(make_config, make_app, offline, tmp_path):
    from werkzeug.http import parse_options_header

    folder = tmp_path / "names"
    folder.mkdir()
    for i, name in enumerate(NAMES):  # distinct bytes: one content, one id each
        Image.new("RGB", (60 + i, 40), (200, 40 * i, 30)).save(folder / name)
    client = make_app(index_folder(make_config, offline, folder)).test_client()
    for name in NAMES:
        r = client.get(f"/image/{content_id(client, name)}")
        assert r.status_code == 200 and r.data == (folder / name).read_bytes(), name
        header = r.headers["Content-Disposition"]
        assert header.isascii() and header.isprintable(), header
        assert parse_options_header(header) == ("inline", {"filename": name})
        # The plain filename= old clients read is ASCII with nothing that needs escaping.
        fallback = header.split('filename="', 1)[1].split('"', 1)[0]
        assert len(fallback) == len(name) and not set(fallback) & {"\\", '"'}


def test_hashed_thumbnails_are_immutable_at_1x_and_2x(client, app, indexed):
    from webui.urls import thumb_urls

    cid = content_id(client, "deep_field_galaxies.jpg")  # 1000 x 872
    digest = content_hash(indexed, cid)
    with app.test_request_context():
        urls = thumb_urls(cid, digest)
    assert urls == {"thumb_url": f"/thumb/{cid}/{digest}-320.jpg",
                    "thumb_url_2x": f"/thumb/{cid}/{digest}-640.jpg"}
    sizes = {}
    for key, url in urls.items():
        r = client.get(url)
        assert r.status_code == 200 and r.mimetype == "image/jpeg", url
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["ETag"] and "Content-Encoding" not in r.headers
        assert client.get(url, headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
        sizes[key] = Image.open(io.BytesIO(r.data)).size
    assert sizes == {"thumb_url": (320, 279), "thumb_url_2x": (640, 558)}
    cached = {p.name for p in (indexed.data_path / "thumbs").rglob("*.jpg")}
    assert cached == {f"{digest}-320.jpg", f"{digest}-640.jpg"}
    # The id-only URL still answers, revalidated each time, from the same 1x file.
    r = client.get(f"/thumb/{cid}")
    assert r.status_code == 200 and "no-cache" in r.headers["Cache-Control"]
    assert Image.open(io.BytesIO(r.data)).size == (320, 279)


def test_hashed_thumbnail_needs_the_content_hash_and_a_known_size(client, indexed):
    cid = content_id(client, "chelsea_cat.png")
    other = content_id(client, "espresso_cup.png")
    digest, other_digest = content_hash(indexed, cid), content_hash(indexed, other)
    for url in (
        f"/thumb/{cid}/{other_digest}-320.jpg",  # another photo's hash
        f"/thumb/{cid}/{'0' * len(digest)}-320.jpg",
        f"/thumb/{cid}/{digest.upper()}-320.jpg",
        f"/thumb/{cid}/{digest[:-1]}-320.jpg",
        f"/thumb/{cid}/-320.jpg",
        f"/thumb/{cid}/{digest}-321.jpg",
        f"/thumb/{cid}/{digest}-1280.jpg",
        f"/thumb/{cid}/{digest}-0.jpg",
        f"/thumb/{cid}/{digest}-320.png",
        f"/thumb/{cid}/{digest}.jpg",
        f"/thumb/999999/{digest}-320.jpg",
        f"/thumb/{cid}/..%2F..%2Fetc%2Fpasswd-320.jpg",
    ):
        r = client.get(url)
        assert r.status_code == 404 and not r.mimetype.startswith("image/"), url
    assert not (indexed.data_path / "thumbs").exists()  # nothing was made for them
