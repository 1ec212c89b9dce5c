"""What lets the ``pixseek`` command use a running server instead of loading the model
itself: the server file in the data dir, and the API the command calls.

``serve`` writes ``<data_dir>/serve.json`` (``search.server_file``: its address, process
id, access token and which database it serves), readable only by the owner, and removes it
on exit.
``pixseek search``, ``status`` and ``classify`` read it (``pixseek/client.py``) and post to
``/api/cli/<command>``. The server answers only for the same database and model (else 409,
and the command runs in process) and answers with what the in-process command would print
from, so the output is the same either way.
"""

from __future__ import annotations

import base64
import json

from flask import Blueprint, Response, current_app, request

from search import library, query, server_file, understand
from search.encoders import canonical_model_id
from webui import service

bp = Blueprint("cli", __name__, url_prefix="/api/cli")


def _json(obj: object, status: int = 200) -> Response:
    # default=str, as the command's own --json output writes dates.
    return Response(json.dumps(obj, default=str), status, mimetype="application/json")


def _body() -> tuple[dict, Response | None]:
    """The request's arguments, or a 409 when it asks for another library or model."""
    body = request.get_json(silent=True) or {}
    eng = service.engine()
    if body.get("database") != server_file.database_key(eng.config.db_url):
        return body, _json({"error": "this server serves another database"}, 409)
    # No model named: the library's own (search.library), if it has one yet.
    model = body.get("model") or library.first_model(eng.store)
    if model is not None and canonical_model_id(model) != eng.model_id:
        return body, _json({"error": f"this server serves the model {eng.model_id}"}, 409)
    return body.get("args") or {}, None


@bp.post("/search")
def search() -> Response:
    args, refused = _body()
    if refused:
        return refused
    images = [(weight, base64.b64decode(data)) for weight, data in args.get("images", [])]
    fields = dict(
        images=images, similar=args.get("similar", []),
        negatives=args.get("negatives", []), after=args.get("after"),
        before=args.get("before"), folders=args.get("folders", []), camera=args.get("camera"),
        k=args.get("k"), offset=args.get("offset", 0), min_score=args.get("min_score"),
        sort=args.get("sort", "relevance"), exact=bool(args.get("exact")),
        collapse=bool(args.get("collapse", True)), in_text=args.get("in_text"),
        places=args.get("places", []), near=args.get("near"),
        tags=args.get("tags", []), not_tags=args.get("not_tags", []),
    )
    text = args.get("query")
    req = query.build(text, **fields)  # a bad field fails before anything is read
    eng = service.engine()
    with current_app.extensions[service.LOCK_KEY]:
        eng.refresh()
        if args.get("parse", True) and text and text.strip():  # as the command does
            req = query.build(text, **fields,
                              vocabulary=understand.vocabulary(eng.store, eng.model_id))
        page = eng.search(req)
        empty = eng.vectors.count == 0
    understood = req.understood if understand.anything(req.understood) else None
    return _json({
        "empty": empty, "understood": understood, "offset": page.offset,
        "next_offset": page.next_offset,
        # the score unrounded, so that the command prints the digits it would print itself
        "results": [{"score": r.score, "result": r.as_dict()} for r in page.results],
    })


@bp.post("/status")
def status() -> Response:
    _args, refused = _body()
    if refused:
        return refused
    with current_app.extensions[service.LOCK_KEY]:
        return _json(service.engine().status())


@bp.post("/classify")
def classify() -> Response:
    args, refused = _body()
    if refused:
        return refused
    from search.prompts import load_templates

    templates = load_templates(args.get("templates"))
    image = base64.b64decode(args["image"])
    with current_app.extensions[service.LOCK_KEY]:
        ranked = service.engine().classify(image, list(args.get("labels", [])), templates,
                                           temperature=args.get("temperature"))
    return _json([[label, p] for label, p in ranked])
