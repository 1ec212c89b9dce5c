"""Pages: the search page, answering text queries (GET) and search by example (POST).

Results are rendered on the server, so the page works without JavaScript and a search is a
plain URL (``/?q=a+cat``) that can be bookmarked; ``static/app.js`` only adds conveniences.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request

from webui import queries

bp = Blueprint("views", __name__)


def _page(**context) -> str:  # noqa: ANN003
    eng = queries.engine()
    context.setdefault("query", "")
    return render_template(
        "index.html",
        indexed=queries.indexed_count(),
        model=eng.model_id,
        **context,
    )


@bp.get("/")
def index() -> str:
    if not queries.is_search(request.args):
        return _page()
    outcome = queries.search(queries.parse_request(request.args))
    return _page(query=request.args.get("q", ""), outcome=outcome,
                 similar=request.args.get("similar"))


@bp.post("/")
def search_by_example() -> str:
    data, name = queries.read_upload(request.files.get("image"))
    outcome = queries.search(queries.parse_request(request.form, upload=data))
    return _page(example=name, outcome=outcome)


@bp.get("/favicon.ico")
def favicon() -> Response:
    # Browsers ask for this on a photo opened on its own, where no <link rel=icon> exists.
    return current_app.send_static_file("favicon.svg")
