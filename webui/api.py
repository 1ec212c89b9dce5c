"""The JSON API. Errors are ``{"error": message}`` with a 4xx/5xx status (see create_app).

A search answers ``{"query", "results", "offset", "next_offset", "understood"}``;
``next_offset`` is null on the last page; ``understood`` is what was read from q (dates,
places, cameras: search.understand), null without q or with ``parse=0``. The fields it
takes are ``service.FIELDS``.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, request

from search.limits import MAX_ID
from webui import openapi, service

bp = Blueprint("api", __name__, url_prefix="/api")


def _answer(query: str | None, outcome: service.Outcome, **extra) -> Response:
    body = {"query": query, **extra, "results": outcome.results, "offset": outcome.offset,
            "next_offset": outcome.next_offset, "understood": outcome.understood}
    if outcome.notice:
        body["message"] = outcome.notice
    return jsonify(body)


@bp.get("/search")
def search_text() -> Response:
    """``?q=TEXT&k=N&offset=N&not=TEXT&after=DATE&before=DATE&folder=PATH&camera=TEXT&
    min_score=X&similar=ID&sort=relevance|newest|oldest&exact=1``, all optional but one of
    q and similar: the matching photos, best first (or by date among the strong ones)."""
    outcome = service.search(service.parse_request(request.args))
    return _answer((request.args.get("q") or "").strip() or None, outcome)


@bp.post("/search")
def search_image() -> Response:
    """Multipart field ``image`` (the photos most like it), plus any field of GET, from
    the query string or the form; ``image_weight`` weighs the image against ``q``."""
    data, name = service.read_upload(request.files.get("image"))
    outcome = service.search(service.parse_request(request.values, upload=data))
    return _answer((request.values.get("q") or "").strip() or None, outcome, example=name)


@bp.get(f"/photos/<int(max={MAX_ID}):cid>")
def photo(cid: int) -> Response:
    """Everything the store knows of one photo: its paths, size, dimensions, format,
    capture time and camera."""
    info = service.photo_details(cid)
    if info is None:
        abort(404, description=f"no indexed photo with id {cid}")
    return jsonify(info)


@bp.get("/facets")
def facets() -> Response:
    """The folders, cameras and date range there are to filter by."""
    return jsonify(service.facets())


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """This API as an OpenAPI 3 document."""
    return jsonify(openapi.document())


@bp.get("/status")
def status() -> Response:
    return jsonify(service.engine().status())
