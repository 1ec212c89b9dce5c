"""Tags taught by example in the browser: ``/tags/<name>`` shows a tag's members and the
photos it is least sure of, each confirmed (y) or rejected (n) with one key; the search page
tags selected results ("Tag as…"). The JSON routes go through ``service``; photos are
referred to by id only (architecture invariant 6)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request

from webui import service

bp = Blueprint("tags", __name__)


@bp.get("/api/tags")
def api_list() -> Response:
    """Every tag with its member count."""
    return jsonify(service.tag_list())


@bp.get("/api/tags/<name>")
def api_tag(name: str) -> Response:
    """A tag's examples, members and suggestions (``k`` of them)."""
    return jsonify(service.tag_view(name, service.parse_k(request.args.get("k")) or 20))


@bp.post("/api/tags/<name>")
def api_teach(name: str) -> Response:
    """``{"add": [ids], "not": [ids], "text": [prompts]}`` (and ``"temperature"`` for a tag
    with prompts only): teach the tag (made if new)."""
    return jsonify(service.teach_tag(name, request.get_json(silent=True)))


@bp.get("/tags/<name>")
def page(name: str) -> str:
    return render_template("tag.html", tag=service.tag_view(name), tags=service.tag_list())
