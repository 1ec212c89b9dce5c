"""The app's service layer: what the pages and the API ask of its one Engine (searches,
counts, photo files, facets).

Every blueprint goes through here so they validate, lock and report the same way. The lock
serialises model calls and index refreshes: the server runs requests in threads and
neither a torch model nor a FAISS index being caught up is safe to share mid-update.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app, url_for
from werkzeug.datastructures import FileStorage, MultiDict

from search import query, understand
from search.engine import Engine, Result
from search.errors import InputError
from search.query import SearchRequest
from search.store import Content
from search.vectors import VectorIndex
from webui.urls import thumb_urls

ENGINE_KEY = "pixseek"
LOCK_KEY = "pixseek.lock"
MAX_OFFSET = 10_000  # deeper pages make the index fetch offset + k candidates


# The query-string fields a search takes (GET /, GET /api/search, and POST with an image).
FIELDS = ("q", "k", "offset", "not", "after", "before", "folder", "camera", "min_score",
          "similar", "sort", "exact", "collapse", "text", "place", "near", "tag", "not_tag",
          "parse")


@dataclass
class Outcome:
    """Results as JSON-ready dicts, or a notice saying why there are none."""

    results: list[dict] = field(default_factory=list)
    notice: str | None = None
    offset: int = 0
    next_offset: int | None = None
    understood: dict | None = None  # dates, places, cameras read from q (search.understand)

    @property
    def strong(self) -> int:
        return sum(r["strong"] for r in self.results)


def install(app: Flask, engine: Engine) -> None:
    app.extensions[ENGINE_KEY] = engine
    app.extensions[LOCK_KEY] = threading.Lock()


def engine() -> Engine:
    return current_app.extensions[ENGINE_KEY]


def parse_k(raw: str | None) -> int:
    return query.check_k(raw) or engine().config.search.default_k


def read_upload(upload: FileStorage | None) -> tuple[bytes, str]:
    """The bytes and display name of the ``image`` field (MAX_CONTENT_LENGTH caps the size)."""
    data = upload.read() if upload is not None else b""
    if upload is None or (not data and not upload.filename):  # the form sent without a file
        raise InputError("choose an image file to search by example (form field 'image')")
    return data, upload.filename or "the uploaded image"


def parse_exact(raw: str | None) -> bool:
    """``exact=1``: bypass the approximate index (to check its recall against exact search)."""
    return parse_flag(raw, "exact", default=False)


def parse_flag(raw: str | None, name: str, default: bool) -> bool:
    """A 1/0 field (also true/false, yes/no); absent or empty is ``default``."""
    value = (raw or "").strip().lower()
    if value == "":
        return default
    if value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise InputError(f"{name} must be 1 or 0, not {raw!r}")


def _number(raw: str | None, what: str, kind: type, low: float, high: float):
    if raw is None or raw.strip() == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high or value != value:  # NaN fails too
        raise InputError(f"{what} must be a {'whole ' if kind is int else ''}number from "
                         f"{low:g} to {high:g}, not {raw!r}")
    return value


def is_search(args: MultiDict) -> bool:
    """Whether a page URL asks for a search (``/?q=...``, ``/?similar=7``) or just the page."""
    return any(args.get(name) is not None for name in ("q", "similar", "text", "tag"))


def parse_request(args: MultiDict, upload: bytes | None = None) -> SearchRequest:
    """The search fields of a query string or form (see FIELDS) as a checked request; an
    uploaded image is one more term, weighted by ``image_weight``."""
    images: list[str | bytes] = []
    if upload is not None:
        weight = _number(args.get("image_weight"), "image_weight", float, 0.01, 100) or 1
        images.append(upload if weight == 1 else (weight, upload))
    return query.build(
        args.get("q"),
        images=images,
        similar=[s for s in args.getlist("similar") if s.strip()],
        negatives=[n for n in args.getlist("not") if n.strip()],
        after=args.get("after"),
        before=args.get("before"),
        folders=args.getlist("folder"),
        camera=args.get("camera"),
        in_text=args.get("text"),
        places=[p for p in args.getlist("place") if p.strip()],
        near=args.get("near"),
        tags=[t for t in args.getlist("tag") if t.strip()],
        not_tags=[t for t in args.getlist("not_tag") if t.strip()],
        k=parse_k(args.get("k")),
        offset=_number(args.get("offset"), "offset", int, 0, MAX_OFFSET) or 0,
        min_score=_number(args.get("min_score"), "min_score", float, -1, 1),
        sort=(args.get("sort") or "relevance").strip(),
        exact=parse_exact(args.get("exact")),
        # collapse=0: every near-duplicate as its own result (search.duplicates)
        collapse=parse_flag(args.get("collapse"), "collapse", default=True),
        vocabulary=_vocabulary(args),
    )


def _vocabulary(args: MultiDict) -> understand.Vocabulary | None:
    """The library's places and cameras, to read q with; None for ``parse=0`` (q as typed)."""
    parse = parse_flag(args.get("parse"), "parse", default=True)
    if not parse or not (args.get("q") or "").strip():
        return None
    eng = engine()
    return understand.vocabulary(eng.store, eng.model_id)


def _current_index() -> VectorIndex:
    """The engine's vector index, caught up with what other processes indexed or removed.
    Opening maps the snapshot (no model load); catching up reads only the change. Call
    with the lock held."""
    eng = engine()
    index = eng.vectors
    eng.refresh()
    return index


def warm_up(app: Flask) -> None:
    """Open the index, load the model and the relevance reference ahead of the first query
    (``serve`` runs this in a thread at start). A failure here is left for that query to
    report, in its own words."""
    with app.app_context(), app.extensions[LOCK_KEY]:
        eng = engine()
        try:
            if eng.vectors.count:
                eng.text_reference()  # loads the model first
        except Exception as exc:  # noqa: BLE001 - reported by the first search instead
            logging.getLogger(__name__).warning("warming up: %s", exc)


def indexed_count() -> int:
    """Photos the engine's model can find: cheap (no model load, no full read)."""
    with current_app.extensions[LOCK_KEY]:
        return _current_index().count


def no_photos_notice() -> str:
    eng = engine()
    return (
        f"No photos are indexed yet for the model {eng.model_id}. "
        "Run `pixseek index PATH` (or `pixseek watch`), then search again."
    )


def search(request: SearchRequest) -> Outcome:
    """Run a search. Raises InputError, ModelLoadError."""
    eng = engine()
    with current_app.extensions[LOCK_KEY]:
        if _current_index().count == 0:
            # and the model never needs loading
            return Outcome(notice=no_photos_notice(), understood=request.understood)
        page = eng.search(request)
    return Outcome([as_json(r) for r in page.results], None, page.offset, page.next_offset,
                   request.understood)


def as_json(result: Result) -> dict:
    out = result.as_dict()
    out["image_url"] = url_for("photos.image", cid=result.content_id)
    out.update(thumb_urls(result.content_id, result.hash))
    out["details_url"] = url_for("api.photo", cid=result.content_id)
    return out


def photo_file(cid: int) -> tuple[Path, Content] | None:
    """The first indexed path of content ``cid`` still on disk, and its row; None if none.

    The only way the app finds a file: by id through the store (architecture invariant 6).
    """
    eng = engine()
    for path in eng.store.paths_for_contents([cid]).get(cid, []):
        if os.path.isfile(path):
            content = eng.store.content(cid)
            return (Path(path), content) if content is not None else None
    return None


def photo_details(cid: int) -> dict | None:
    """One photo's paths and metadata as JSON, or None when it has no indexed file."""
    photo = engine().store.photos([cid]).get(cid)
    if photo is None:
        return None
    return {
        "id": cid,
        "path": photo.paths[0],
        "paths": photo.paths,
        "size": photo.size,
        "width": photo.width,
        "height": photo.height,
        "format": photo.format,
        "taken_at": _iso(photo.taken_at),
        "camera": photo.camera,
        "date": _iso(photo.date),
        "date_source": "exif" if photo.taken_at else "file",
        "text": engine().store.texts([cid]).get(cid),  # read from its pixels (OCR)
        "place": engine().store.place(cid),  # EXIF GPS, named offline
        "image_url": url_for("photos.image", cid=cid),
        **thumb_urls(cid, photo.hash),
    }


def facets() -> dict:
    found = engine().store.facets()
    found["dates"] = {key: _iso(value) for key, value in found["dates"].items()}
    found["tags"] = engine().store.tag_facets()
    return found


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when else None


# -- tags taught by example (search.tags; routes in webui/tags.py) -------------------------


def teach_tag(name: str, body: object) -> dict:
    """``POST /api/tags/<name>`` with ``{"add": [ids], "not": [ids], "text": [prompts]}``
    (and optionally ``"temperature"``, for a tag with prompts only): the tag's examples
    grow, it is refitted and applied to the library."""
    from search import tags

    if not isinstance(body, dict):
        raise InputError('send JSON like {"add": [12, 40], "not": [7], "text": ["a receipt"]}')
    fields = {}
    for key in ("add", "not", "text"):
        value = body.get(key, [])
        if isinstance(value, str | int):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise InputError(f"{key}: a list of photo ids{' or texts' if key == 'text' else ''}")
        fields[key] = [str(v) for v in value]
    eng = engine()
    lock = current_app.extensions[LOCK_KEY]

    def encode_texts(texts: list[str]):
        with lock:  # only the model call: searches go on while the tag is applied
            return eng.encoder.encode_texts(texts)

    def logit_scale() -> float:
        from search.calibration import logit_scale

        with lock:
            return logit_scale(eng.encoder)

    return tags.teach(eng.store, eng.model_id, encode_texts, name, fields["add"],
                      fields["not"], fields["text"], logit_scale, body.get("temperature"))


def _tag_photos(rows: list[dict]) -> list[dict]:
    """Tag rows with their thumbnails (one query for the lot)."""
    photos = engine().store.photos(r["id"] for r in rows)
    out = []
    for row in rows:
        if row["id"] in photos:
            out.append({**row, **thumb_urls(row["id"], photos[row["id"]].hash),
                        "details_url": url_for("views.index", similar=row["id"])})
    return out


TAG_PAGE_MEMBERS = 200  # the surest ones; `pixseek tag NAME --list` has them all


def tag_view(name: str, k: int = 20) -> dict:
    """A tag, its surest members and its suggestions (``GET /api/tags/<name>``)."""
    from search import tags

    eng = engine()
    info = tags.describe(eng.store, tags.check_name(name))
    info["members"] = _tag_photos(tags.members(eng.store, name)[:TAG_PAGE_MEMBERS])
    info["suggestions"] = _tag_photos(tags.suggestions(eng.store, eng.model_id, name, k))
    return info


def tag_list() -> list[dict]:
    return [{"name": t.name, "count": n, "version": t.version, "prompts": t.prompt_list}
            for t, n in engine().store.all_tags()]
