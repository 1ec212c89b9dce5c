"""Pages: the search page, its detail view, and search by example.

Results are rendered on the server, so the page works without JavaScript and every state is
a plain URL that can be bookmarked, shared and reloaded: ``/?q=a+cat``, ``/?similar=7``,
``/?example=<sha256>`` (an upload, stored by ``examples``), each with filters, ``offset``
for paging and ``photo=7`` for the detail view. ``static/app.js`` only adds conveniences:
the detail view as a dialog, More appending in place, a loading message.
"""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.datastructures import MultiDict

from search.errors import InputError
from search.limits import MAX_ID
from webui import examples, service
from webui.auth import QUERY_PARAM
from webui.photos import EXTRA_TYPES, YEAR

bp = Blueprint("views", __name__)
# The fields the filter panel sets; it carries every other field of the URL along.
FILTERS = ("after", "before", "folder", "camera", "place", "sort")
FACETS_KEY = "pixseek.facets"
FACETS_TTL = 60.0  # seconds: listing the folders reads every path in the store


def model_loaded() -> bool:
    """Whether the first search will have to load the model first (seconds, not ms)."""
    return service.engine().model_loaded


@bp.app_template_global()
def page_url(**changes) -> str:
    """This page's URL with some fields set (None drops one); never the access token."""
    args = MultiDict(request.args) if request.method == "GET" else MultiDict()
    args.poplist(QUERY_PARAM)
    for key, value in changes.items():
        args.poplist(key)
        if value is not None:
            args.setlist(key, value if isinstance(value, list) else [value])
    pairs = [(k, v) for k, v in args.items(multi=True) if v != ""]
    return url_for("views.index") + ("?" + urlencode(pairs) if pairs else "")


@bp.app_template_global()
def without_url(understood: dict, drop: str, value: str | None = None) -> str:
    """This search without one part of what was read from q (``drop``: date, place or
    camera): the words as read are searched as typed (parse=0) and the other parts stay,
    as the explicit fields they stand for."""
    words = understood["text"] or request.args.get("q", "")  # nothing left: as typed
    changes: dict = {"q": words, "parse": "0", "offset": None, "photo": None}
    if drop != "date":
        changes.update({key: understood[key] for key in ("after", "before") if understood[key]})
    places = [p for p in understood["places"] if not (drop == "place" and p == value)]
    if places:
        changes["place"] = places
    cameras = [c for c in understood["cameras"] if not (drop == "camera" and c == value)]
    if cameras:
        changes["camera"] = cameras[0]
    return page_url(**changes)


def facets() -> dict:
    """``service.facets()``, reused for a minute: it costs a read of every path."""
    cached = current_app.extensions.get(FACETS_KEY)
    if cached is None or time.monotonic() - cached[0] > FACETS_TTL:
        cached = (time.monotonic(), service.facets())
        current_app.extensions[FACETS_KEY] = cached
    return cached[1]


@bp.app_template_global()
def alt_text(photo: dict) -> str:
    """What a photo is, from its metadata (a file name says little to a screen reader)."""
    date = (photo.get("date") or "")[:10]
    text = f"Photo taken {date}" if photo.get("taken_at") else f"Photo from {date}"
    if photo.get("camera"):
        text += f" with {photo['camera']}"
    return f"{text}, in {Path(photo['path']).parent.name or 'the library'}"


@bp.app_template_filter("when")
def when(iso: str | None) -> str:
    return iso.replace("T", " ")[:16] if iso else "unknown"


@bp.app_template_filter("filesize")
def filesize(size: int | None) -> str:
    if size is None:
        return "unknown"
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1e3:.1f} KB" if size < 1e6 else f"{size / 1e6:.1f} MB"


def _page(**context) -> str:
    eng = service.engine()
    context.setdefault("query", "")
    return render_template(
        "index.html",
        indexed=service.indexed_count(),
        model=eng.model_id,
        model_loaded=model_loaded(),
        **context,
    )


def _photo(raw: str | None, results: list[dict]) -> dict | None:
    """The detail view's photo (``photo=ID``), with its score and neighbours on this page."""
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) > MAX_ID:
        raise InputError(f"photo must be a photo id (a whole number), not {raw!r}")
    info = service.photo_details(int(raw))
    if info is None:
        abort(404, description=f"no indexed photo with id {raw}")
    ids = [r["id"] for r in results]
    if info["id"] in ids:
        at = ids.index(info["id"])
        info["score"] = results[at]["score"]
        info["prev"] = results[at - 1]["id"] if at > 0 else None
        info["next"] = results[at + 1]["id"] if at + 1 < len(ids) else None
    return info


def _source(similar: str | None) -> dict | None:
    """The photo a "similar" search starts from, to show it ("Photos like <img>")."""
    if similar and similar.strip().isdigit():
        return service.photo_details(int(similar))
    return None


@bp.get("/")
def index() -> str:
    args = request.args
    digest = args.get("example")
    if not (service.is_search(args) or digest):
        return _page(photo=_photo(args.get("photo"), []))
    upload = examples.load(digest) if digest else None
    outcome = service.search(service.parse_request(args, upload=upload))
    return _page(
        query=args.get("q", ""), outcome=outcome, similar=args.get("similar"),
        source=_source(args.get("similar")), photo=_photo(args.get("photo"), outcome.results),
        example=(args.get("name") or "your image") if digest else None,
        example_url=url_for("views.example", digest=digest) if digest else None,
        facets=facets(), filters={name: args.get(name, "") for name in FILTERS},
        # What the filter panel's form sends along unchanged: the search itself.
        carry=[(k, v) for k, v in args.items(multi=True)
               if k not in (*FILTERS, "offset", "photo", QUERY_PARAM) and v != ""],
    )


@bp.post("/")
def search_by_example() -> Response:
    """Store the upload, then answer with the URL of its search (303: the browser GETs it)."""
    data, name = service.read_upload(request.files.get("image"))
    service.parse_request(request.form, upload=data)  # a bad field is a 400 here, not later
    digest = examples.save(data)
    fields = [(k, v) for k, v in request.form.items(multi=True)
              if (k in service.FIELDS or k == "image_weight") and v != ""]
    return redirect(url_for("views.index") + "?" + urlencode(
        [("example", digest), ("name", name), *fields]), 303)


@bp.get("/example/<digest>")
def example(digest: str) -> Response:
    """An uploaded example image, by the digest of its bytes (so cached as immutable)."""
    path = examples.find(digest)
    if path is None:
        abort(404, description="no such example image: upload it again")
    mimetype = EXTRA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    resp = send_file(path, mimetype=mimetype or "application/octet-stream", conditional=True,
                     max_age=YEAR)
    resp.cache_control.immutable = True
    return resp


@bp.get("/favicon.ico")
def favicon() -> Response:
    # Browsers ask for this on a photo opened on its own, where no <link rel=icon> exists.
    return current_app.send_static_file("favicon.svg")
