"""What the page and the API ask of the app's one Engine: searches, counts, photo files.

Both blueprints go through here so they validate, lock and report the same way. The lock
serialises model calls and index refreshes: Flask's dev server runs requests in threads and
neither a torch model nor a FAISS index being caught up is safe to share mid-update.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app, url_for
from werkzeug.datastructures import FileStorage

from search.engine import Engine, Result
from search.errors import InputError
from search.store import Content

ENGINE_KEY = "pixseek"
LOCK_KEY = "pixseek.lock"
MAX_K = 200


@dataclass
class Outcome:
    """Results as JSON-ready dicts, or a notice saying why there are none."""

    results: list[dict] = field(default_factory=list)
    notice: str | None = None


def install(app, engine: Engine) -> None:  # noqa: ANN001 - a Flask app
    app.extensions[ENGINE_KEY] = engine
    app.extensions[LOCK_KEY] = threading.Lock()


def engine() -> Engine:
    return current_app.extensions[ENGINE_KEY]


def parse_k(raw: str | None) -> int:
    if raw is None or raw.strip() == "":
        return min(engine().config.search.default_k, MAX_K)
    try:
        k = int(raw)
    except ValueError:
        k = 0
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be a whole number from 1 to {MAX_K}, not {raw!r}")
    return k


def read_upload(upload: FileStorage | None) -> tuple[bytes, str]:
    """The bytes and display name of the ``image`` field (MAX_CONTENT_LENGTH caps the size)."""
    data = upload.read() if upload is not None else b""
    if upload is None or (not data and not upload.filename):  # the form sent without a file
        raise InputError("choose an image file to search by example (form field 'image')")
    return data, upload.filename or "the uploaded image"


def parse_exact(raw: str | None) -> bool:
    """``exact=1``: bypass the approximate index (to check its recall against exact search)."""
    value = (raw or "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise InputError(f"exact must be 1 or 0, not {raw!r}")


def _current_index():  # noqa: ANN202 - a VectorIndex
    """The engine's vector index, caught up with what other processes indexed or removed.
    Opening maps the snapshot (no model load); catching up reads only the change. Call
    with the lock held."""
    eng = engine()
    index = eng.vectors
    eng.refresh()
    return index


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


def search(query: str | bytes, k: int, exact: bool = False) -> Outcome:
    """Text (str) or search-by-example (image bytes). Raises InputError, ModelLoadError."""
    eng = engine()
    if isinstance(query, str):
        query = eng.check_query(query)  # empty or too long: say so before anything else
    with current_app.extensions[LOCK_KEY]:
        if _current_index().count == 0:
            return Outcome(notice=no_photos_notice())  # and the model never needs loading
        if isinstance(query, str):
            results = eng.search_text(query, k, exact=exact)
        else:
            results = eng.search_image_bytes(query, k, exact=exact)
    return Outcome([as_json(r) for r in results])


def as_json(result: Result) -> dict:
    out = result.as_dict()
    out["image_url"] = url_for("photos.image", cid=result.content_id)
    out["thumb_url"] = url_for("photos.thumb", cid=result.content_id)
    return out


def photo_file(cid: int) -> tuple[Path, Content] | None:
    """The first indexed path of content ``cid`` still on disk, and its row; None if none.

    The only way the app finds a file: by id through the store (architecture invariant 6).
    """
    eng = engine()
    for path in eng.store.paths_for_contents([cid]).get(cid, []):
        if os.path.isfile(path):
            with eng.store.session() as s:
                content = s.get(Content, cid)
            return (Path(path), content) if content is not None else None
    return None
