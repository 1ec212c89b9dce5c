"""The search page on the server: the detail view's URL, similar photos, search by example as
a URL, paging with More, the filter panel. (The browser side is in test_browser.py.)"""

from __future__ import annotations

import html as htmllib
import io
import re

import pytest

from webui import examples


def page(client, status: int = 200, **params) -> str:
    r = client.get("/", query_string=params)
    assert r.status_code == status, r.get_data(as_text=True)[:2000]
    return r.get_data(as_text=True)


def ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li class="result[^"]*" data-id="(\d+)"', html)]


def links(html: str) -> list[str]:
    return [htmllib.unescape(h) for h in re.findall(r'href="([^"]+)"', html)]


def test_result_tiles_link_to_the_detail_view_similar_and_original(client):
    html = page(client, q="a cat", k=5)
    first = ids(html)[0]
    assert f"/?q=a+cat&k=5&photo={first}" in links(html)
    assert f"/?similar={first}" in links(html) and f"/image/{first}" in links(html)
    # Alt text says what the photo is from its metadata; the caption gives the file name.
    alt = re.search(r'<a class="open"[^>]*>\s*<img [^>]*alt="([^"]+)"', html).group(1)
    assert alt.startswith("Photo from ") and ", in photos" in alt and ".png" not in alt


def test_detail_view_is_a_page_of_its_own(client, library):
    results = ids(page(client, q="a cat"))
    html = page(client, q="a cat", photo=results[1])
    dialog = html[html.index('<dialog class="detail"'):html.index("</dialog>")]
    assert f'open data-id="{results[1]}"' in dialog
    name = re.search(r'<h2 id="detail-name">([^<]+)<', dialog).group(1)
    assert f"<li>{library / name}</li>" in dialog  # its paths
    assert re.search(r'id="detail-date">\d{4}-\d\d-\d\d \d\d:\d\d \(file time\)<', dialog)
    assert re.search(r'id="detail-dims">\d+ × \d+ pixels<', dialog)
    assert re.search(r'id="detail-size">\d+\.\d (KB|MB)<', dialog)
    assert re.search(r'id="detail-score">-?\d\.\d{3}<', dialog)
    assert re.search(rf'srcset="/thumb/{results[1]}/\w+-640\.jpg 640w, /image/{results[1]} \d+w"',
                     dialog)
    hrefs = links(dialog)
    assert "/?q=a+cat" in hrefs  # close: the results again
    assert f"/?q=a+cat&photo={results[0]}" in hrefs and f"/?q=a+cat&photo={results[2]}" in hrefs
    assert f"/?similar={results[1]}" in hrefs and f"/image/{results[1]}" in hrefs
    assert page(client, 404, q="a cat", photo=999999)
    assert "photo must be a photo id" in page(client, 400, q="a cat", photo="../etc")
    # Without a search, the detail view still opens (a shared link to one photo).
    assert 'id="detail-score">not in these results<' in page(client, photo=results[0])


def test_similar_page_shows_the_source_photo(client):
    cat = ids(page(client, q="a cat"))[0]
    html = page(client, similar=cat)
    summary = html[html.index('<h1 class="summary">'):html.index("</h1>")]
    assert re.search(rf'like <b>chelsea_cat.png</b> <img class="source" src="/thumb/{cat}/\w+-320',
                     summary)
    assert cat not in ids(html)


def test_more_link_pages_through_everything(client):
    seen, params = [], {"q": "a cat", "k": 5}
    while True:
        html = page(client, **params)
        seen += ids(html)
        more = re.search(r'<a class="button" id="more" href="([^"]+)"', html)
        if more is None:
            break
        assert htmllib.unescape(more.group(1)) == f"/?q=a+cat&k=5&offset={len(seen)}"
        params["offset"] = len(seen)
    assert len(seen) == len(set(seen)) == 12


def test_strong_and_weak_matches_are_apart(client):
    html = page(client, q="a cat")
    strong, weak = html.index('id="strong"'), html.index('id="weak"')
    assert strong < html.index(">Weaker matches</h2>") < weak
    assert "Nothing matches" not in html
    html = page(client, q="asdfghjkl qwerty")
    assert "Nothing matches 'asdfghjkl qwerty' well; these are the nearest photos" in html
    assert 'id="strong"' not in html and "Weaker matches" not in html


def test_filter_panel_keeps_every_field_in_the_url(client, library):
    html = page(client, q="a cat", k=4, after="2000-01-01", folder=str(library), sort="newest")
    panel = html[html.index('<details class="filters" open>'):html.index("</details>")]
    assert '<form method="get" action="/">' in panel
    assert '<input type="hidden" name="q" value="a cat">' in panel
    assert '<input type="hidden" name="k" value="4">' in panel
    assert '<input type="date" name="after" value="2000-01-01"' in panel
    assert '<input type="date" name="before" value=""' in panel
    assert f'<option value="{library}" selected>{library} (12)</option>' in panel
    assert '<select name="camera">' in panel and '<option value="newest" selected>' in panel
    assert "(2 set)" in panel  # after and folder; the order narrows nothing
    # The search box keeps the filters for a new query; More keeps them for the next page.
    assert '<input type="hidden" name="sort" value="newest">' in html.split("</header>")[0]
    more = htmllib.unescape(re.search(r'id="more" href="([^"]+)"', html).group(1))
    assert "after=2000-01-01" in more and "sort=newest" in more and "offset=4" in more
    assert "<details class=\"filters\">" in page(client, q="a cat")  # closed when none set


def heading(html: str) -> str:
    h1 = html[html.index('<h1 class="summary">'):html.index("</h1>")]
    return " ".join(re.sub(r"<[^>]+>", "", h1).split())


def test_headings_say_only_what_is_true(client):
    assert heading(page(client, q="a cat", k=5)) == "5 photos for a cat, best first"
    assert heading(page(client, q="a cat", k=5, offset=5)) \
        == "5 photos for a cat, from number 6, best first"
    newest = page(client, q="a cat", k=5, sort="newest")
    assert heading(newest) == "5 photos for a cat, newest first"
    assert "<summary>Filters</summary>" in newest  # an order alone is no filter set
    assert heading(page(client, q="a cat", k=1, sort="oldest")) \
        == "1 photo for a cat, oldest first"
    # Nothing strong: no count of "best" photos, and no More to page through the rest.
    nonsense = page(client, q="asdfghjkl qwerty", k=5)
    assert heading(nonsense) == "No strong matches for asdfghjkl qwerty"
    assert len(ids(nonsense)) == 5 and 'id="more"' not in nonsense
    assert heading(page(client, q="a cat", camera="no such camera")) == "No photos for a cat"


def test_no_page_names_a_command_line_flag(client):
    for params in ({"similar": "999999"}, {"text": "!!"}, {"q": "a cat", "folder": "/nonexistent"}):
        html = client.get("/", query_string=params).get_data(as_text=True)
        message = re.search(r'id="message"[^>]*>([^<]*)<', html).group(1)
        assert message and not re.search(r"(^|\s)--?[a-z]", message), message


def test_search_by_example_is_a_url_that_shows_the_image(client, library):
    data = (library / "espresso_cup.png").read_bytes()
    r = client.post("/", data={"image": (io.BytesIO(data), "my cup.png"), "k": "3"},
                    content_type="multipart/form-data")
    assert r.status_code == 303
    digest = re.search(r"example=([0-9a-f]{64})", r.location).group(1)
    assert "name=my+cup.png" in r.location and "k=3" in r.location
    html = page(client, example=digest, name="my cup.png", k=3)
    assert f'like <b>my cup.png</b> <img class="source" src="/example/{digest}"' in html
    assert len(ids(html)) == 3
    img = client.get(f"/example/{digest}")
    assert img.status_code == 200 and img.mimetype == "image/png" and img.data == data
    assert "immutable" in img.headers["Cache-Control"]
    # The same upload again is the same URL, and filters and paging work on it.
    again = client.post("/", data={"image": (io.BytesIO(data), "cup.png")},
                        content_type="multipart/form-data")
    assert digest in again.location
    assert len(ids(page(client, example=digest, k=3, offset=3))) == 3


def test_example_digests_are_checked_and_expire(client, app, monkeypatch):
    for bad in ("../../etc/passwd", "0" * 63, "A" * 64, "0" * 64):
        assert client.get(f"/example/{bad}").status_code == 404
    assert "no longer kept" in page(client, 400, example="0" * 64)
    assert "no longer kept" in page(client, 400, example="../pixseek.db")
    # Only the newest KEEP uploads are kept.
    from PIL import Image

    monkeypatch.setattr(examples, "KEEP", 3)
    digests = []
    for shade in range(5):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (shade * 40, 0, 0)).save(buf, "PNG")
        r = client.post("/", data={"image": (io.BytesIO(buf.getvalue()), "x.png")},
                        content_type="multipart/form-data")
        digests.append(re.search(r"example=(\w+)", r.location).group(1))
    with app.app_context():
        kept = sorted(p.name.split(".")[0] for p in examples.folder().iterdir())
    assert len(kept) == 3 and set(kept) <= set(digests)


@pytest.mark.parametrize("model_loaded", [True, False])
def test_home_page_says_whether_the_model_is_loaded(client, app, model_loaded):
    engine = app.extensions["pixseek"]
    if not model_loaded:
        engine._encoder = None
    assert f'data-model-loaded="{int(model_loaded)}"' in page(client)


def test_empty_library_is_flagged_on_the_home_page(make_config, make_app):
    client = make_app(make_config(model__name="offline")).test_client()
    html = page(client)
    assert 'id="empty-library"' in html and "pixseek index PATH" in html


def test_pages_have_no_inline_script_or_style(client):
    cat = ids(page(client, q="a cat"))[0]
    for html in (page(client), page(client, q="a cat", photo=cat), page(client, similar=cat)):
        assert not re.search(r"<script(?![^>]*\ssrc=)", html) and " style=" not in html
