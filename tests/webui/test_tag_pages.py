"""Tags in the web UI: teaching by POST, the tag page, and tag filters in the API."""

from __future__ import annotations


def _id(client, q: str) -> int:
    return client.get("/api/search", query_string={"q": q, "k": 1}).get_json()["results"][0]["id"]


def test_teach_page_search_and_facets(client):
    cat, cup = _id(client, "a cat"), _id(client, "a cup of coffee")
    r = client.post("/api/tags/pets", json={"add": [cat], "not": [cup]})
    assert r.status_code == 200, r.get_json()
    info = r.get_json()
    assert info["name"] == "pets" and info["positives"] == [cat] and info["count"] >= 1

    found = client.get("/api/search", query_string={"q": "a photo", "tag": "pets",
                                                     "collapse": 0}).get_json()["results"]
    members = {m["id"] for m in client.get("/api/tags/pets").get_json()["members"]}
    assert cat in members and cup not in members
    assert {r["id"] for r in found} == members
    others = client.get("/api/search", query_string={"q": "a photo", "not_tag": "pets",
                                                      "k": 50}).get_json()["results"]
    assert not {r["id"] for r in others} & members

    page = client.get("/", query_string={"tag": "pets"}).get_data(as_text=True)
    assert all(f'data-id="{m}"' in page for m in members) and 'id="tag-as"' in page
    assert {"name": "pets", "count": len(members)} in client.get("/api/facets").get_json()["tags"]
    page = client.get("/tags/pets")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-answer="add"' in html and 'aria-keyshortcuts="y"' in html
    assert f'data-id="{cat}"' in html


def test_bad_requests_are_one_clear_error(client):
    assert "no tag named" in client.get("/api/tags/nope").get_json()["error"]
    assert client.get("/api/search", query_string={"q": "a", "tag": "nope"}).status_code == 400
    r = client.post("/api/tags/x", data="not json", content_type="text/plain")
    assert r.status_code == 400 and "JSON" in r.get_json()["error"]
    r = client.post("/api/tags/x", json={"add": [987654]})
    assert r.status_code == 400 and "no photo with id 987654" in r.get_json()["error"]
    assert client.get("/api/tags").get_json() == []


def test_a_prompt_only_tag_takes_a_temperature(client):
    counts = {}
    for name, body in (("hot", {"temperature": 1}), ("calibrated", {}),
                       ("cold", {"temperature": 0.001})):
        r = client.post(f"/api/tags/{name}", json={"text": ["a cat"], **body})
        assert r.status_code == 200, r.get_json()
        counts[name] = r.get_json()["count"]
    assert counts["hot"] <= counts["calibrated"] <= counts["cold"]
    assert counts["hot"] < counts["cold"]
    for bad in (0, -1, "warm", True):
        r = client.post("/api/tags/x", json={"text": ["a cat"], "temperature": bad})
        assert r.status_code == 400 and "temperature" in r.get_json()["error"]
