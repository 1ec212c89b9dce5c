"""Indexed photos and their thumbnails, looked up by content id only (architecture invariant 6).

No route takes a path: ``<int:cid>`` matches digits alone, the store maps the id to the
paths it indexed, and an id that is unknown or whose files are all gone is a 404.

Thumbnails have two kinds of URL. ``/thumb/<id>`` is revalidated on every use (ids may be
reused after a re-index). ``/thumb/<id>/<hash>-<size>.jpg`` names the content's bytes, so
its answer never changes and is cached as immutable: a results page of 50 thumbnails costs
no request at all the second time. A hash that is not the content's is a 404.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, Response, abort, send_file

from search.limits import MAX_ID
from search.store import Content
from webui import service, thumbs
from webui.urls import thumb_urls  # noqa: F401  (importable from here too)

bp = Blueprint("photos", __name__)
log = logging.getLogger(__name__)
# Formats the indexer reads that Python's mimetypes table may not know.
EXTRA_TYPES = {
    ".webp": "image/webp", ".heic": "image/heic", ".heif": "image/heif", ".avif": "image/avif",
}
YEAR = 365 * 24 * 3600
# What a quoted-string may not hold as is (RFC 6266 filename): controls, quote, backslash,
# and anything beyond ASCII, which old clients read as Latin-1.
_NOT_FALLBACK = re.compile(r'[^\x20-\x7e]|["\\]')


def content_disposition(name: str) -> str:
    """``inline`` with the file's name, for any name a file system allows (RFC 6266, 5987).

    werkzeug puts the name into the header as is, and a line break there is a 500. An ASCII
    fallback goes in ``filename``, the exact name percent-encoded as UTF-8 in ``filename*``.
    """
    fallback = _NOT_FALLBACK.sub("_", name)
    # surrogateescape: a name that is not valid UTF-8 keeps its original bytes. safe="":
    # only letters, digits and "_.-~" stay unencoded, all of them RFC 5987 attr-chars.
    exact = quote(name.encode("utf-8", "surrogateescape"), safe="")
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def _located(cid: int) -> tuple[Path, Content]:
    found = service.photo_file(cid)
    if found is None:
        abort(404, description=f"no indexed photo with id {cid} is on disk")
    return found


def _thumbnail(cid: int, path: Path, content: Content, size: int) -> Path:
    config = service.engine().config
    try:
        thumb_path = thumbs.thumbnail(
            path, config.data_path / "thumbs", content.hash, config.indexer.max_image_pixels,
            size,
        )
    except thumbs.ThumbnailError as exc:
        log.warning("thumbnail for %s: %s", path, exc)
        abort(404, description=f"photo {cid} can no longer be decoded")
    return thumb_path


@bp.get(f"/image/<int(max={MAX_ID}):cid>")
def image(cid: int) -> Response:
    path, _content = _located(cid)
    suffix = path.suffix.lower()
    mimetype = EXTRA_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0]
    # ETag + conditional: revalidated each time (ids may be reused after a re-index).
    # download_name: a placeholder werkzeug can always put in a header; replaced below.
    resp = send_file(path, mimetype=mimetype or "application/octet-stream", conditional=True,
                     etag=True, max_age=None, download_name="photo")
    resp.headers["Content-Disposition"] = content_disposition(path.name)
    return resp


@bp.get(f"/thumb/<int(max={MAX_ID}):cid>")
def thumb(cid: int) -> Response:
    path, content = _located(cid)
    thumb_path = _thumbnail(cid, path, content, thumbs.SIZE)
    # The content hash names exactly these bytes: a strong validator.
    return send_file(thumb_path, mimetype="image/jpeg", conditional=True, etag=content.hash,
                     max_age=None)


@bp.get(f"/thumb/<int(max={MAX_ID}):cid>/<digest>-<int:size>.jpg")
def thumb_immutable(cid: int, digest: str, size: int) -> Response:
    if size not in thumbs.SIZES:
        abort(404, description=f"thumbnails come in sizes {thumbs.SIZES}, not {size}")
    path, content = _located(cid)
    # A stale hash (the id now names other bytes) is never answered: the browser would
    # keep the wrong image for a year.
    if content.hash != digest:
        abort(404, description=f"photo {cid} has no content {digest}")
    thumb_path = _thumbnail(cid, path, content, size)
    resp = send_file(thumb_path, mimetype="image/jpeg", conditional=True,
                     etag=f"{digest}-{size}", max_age=YEAR)
    resp.cache_control.immutable = True
    return resp
