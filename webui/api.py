"""The JSON API. Errors are ``{"error": message}`` with a 4xx/5xx status (see create_app)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from webui import queries

bp = Blueprint("api", __name__, url_prefix="/api")


def _answer(query: str | None, outcome: queries.Outcome, **extra) -> Response:  # noqa: ANN003
    body = {"query": query, **extra, "results": outcome.results}
    if outcome.notice:
        body["message"] = outcome.notice
    return jsonify(body)


@bp.get("/search")
def search_text() -> Response:
    """``?q=TEXT&k=N[&exact=1]``: the k photos that best match the text, best first."""
    query = request.args.get("q", "")
    outcome = queries.search(
        query, queries.parse_k(request.args.get("k")),
        exact=queries.parse_exact(request.args.get("exact")),
    )
    return _answer(query.strip(), outcome)


@bp.post("/search")
def search_image() -> Response:
    """Multipart field ``image``: the photos most like it (k from the query or the form)."""
    data, name = queries.read_upload(request.files.get("image"))
    outcome = queries.search(
        data, queries.parse_k(request.values.get("k")),
        exact=queries.parse_exact(request.values.get("exact")),
    )
    return _answer(None, outcome, example=name)


@bp.get("/status")
def status() -> Response:
    return jsonify(queries.engine().status())
