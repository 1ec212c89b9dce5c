"""Near-duplicates in the web UI: one card per group with "+N similar", collapse=0 through
the API, and the /duplicates page with the photo to keep marked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.duplicates import make_copies


@pytest.fixture
def dup_client(make_config, library, offline, make_app):
    """The 12 sample photos, two copies of the cat and one of the coffee, indexed."""
    from indexer.pipeline import Indexer
    from search.store import Store

    make_copies(library / "chelsea_cat.png", library, "chelsea_cat", ["half", "jpeg40"])
    make_copies(library / "espresso_cup.png", library, "espresso_cup", ["brighter"])
    config = make_config(model__name="offline")
    store = Store(config.db_url)
    try:
        assert Indexer(config, store, offline, progress=False).index([library]).encoded == 15
    finally:
        store.close()
    return make_app(config).test_client()


def names(body: dict) -> list[str]:
    return [Path(r["path"]).name for r in body["results"]]


def test_api_results_fold_near_duplicates_unless_collapse_0(dup_client):
    body = dup_client.get("/api/search", query_string={"q": "a cat", "k": 5}).get_json()
    assert len(body["results"]) == 5
    # One of the three cats, the best-ranked, holding the other two.
    assert [n.startswith("chelsea_cat") for n in names(body)] == [True] + [False] * 4
    top = body["results"][0]
    assert len(top["duplicates"]) == 2
    assert all(isinstance(r["duplicates"], list) for r in body["results"])
    paths = {dup_client.get(f"/api/photos/{i}").get_json()["path"]
             for i in [top["id"], *top["duplicates"]]}
    assert {Path(p).name for p in paths} == {"chelsea_cat.png", "chelsea_cat__half.jpg",
                                             "chelsea_cat__jpeg40.jpg"}

    every = dup_client.get("/api/search",
                           query_string={"q": "a cat", "k": 5, "collapse": "0"}).get_json()
    assert set(names(every)[:3]) == {"chelsea_cat.png", "chelsea_cat__half.jpg",
                                     "chelsea_cat__jpeg40.jpg"}
    assert all(r["duplicates"] == [] for r in every["results"])
    # Pages of one-result-per-group follow each other: 13 groups for 15 photos.
    ids, offset = [], 0
    while offset is not None:
        page = dup_client.get("/api/search",
                              query_string={"q": "a photo", "k": 4, "offset": offset}).get_json()
        ids += [i for r in page["results"] for i in (r["id"], *r["duplicates"])]
        offset = page["next_offset"]
    assert len(ids) == len(set(ids)) == 15


def test_a_bad_collapse_is_a_400(dup_client):
    r = dup_client.get("/api/search", query_string={"q": "a cat", "collapse": "maybe"})
    assert r.status_code == 400 and "collapse must be 1 or 0" in r.get_json()["error"]


def test_the_result_grid_shows_plus_n_similar(dup_client):
    html = dup_client.get("/", query_string={"q": "a cat", "k": 5}).get_data(as_text=True)
    tiles = re.findall(r'<li class="result.*?</li>', html, re.S)
    assert len(tiles) == 5
    badges = re.findall(r'<a class="similar-badge" href="([^"]+)"[^>]*>\+(\d+) similar</a>',
                        tiles[0])
    assert badges and badges[0][1] == "2"  # the cat, holding its two copies
    assert "collapse=0" in badges[0][0] and "q=a+cat" in badges[0][0]
    every = dup_client.get(badges[0][0].replace("&amp;", "&")).get_data(as_text=True)
    assert "similar-badge" not in every and "chelsea_cat__half.jpg" in every


def test_duplicates_page_shows_groups_with_the_keeper_marked(dup_client):
    r = dup_client.get("/duplicates")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    groups = re.findall(r'<section class="dup-group".*?</section>', html, re.S)
    assert len(groups) == 2
    for group in groups:
        kept = re.findall(r'<li class="dup keep" data-id="(\d+)">', group)
        assert len(kept) == 1 and group.count('class="keep-mark"') == 1
        assert len(re.findall(r'<li class="dup"', group)) in (1, 2)
        assert re.search(r'src="/thumb/\d+/[0-9a-f]+-320\.jpg"', group)
    cat = next(g for g in groups if "chelsea_cat__half.jpg" in g)
    keep_li = re.search(r'<li class="dup keep".*?</li>', cat, re.S).group(0)
    assert "chelsea_cat.png" in keep_li  # the original: the most pixels, the largest file
    assert "2 groups, 3 photos besides the ones to keep" in " ".join(html.split())
    assert not re.search(r"<script(?![^>]*\ssrc=)", html) and " style=" not in html
    assert 'href="/duplicates"' in dup_client.get("/").get_data(as_text=True)


def test_duplicates_page_without_any(client):
    html = client.get("/duplicates").get_data(as_text=True)
    assert 'id="no-duplicates"' in html and "dup-group" not in html
