"""Indexed photos and their thumbnails, looked up by content id only (architecture invariant 6).

No route takes a path: ``<int:cid>`` matches digits alone, the store maps the id to the
paths it indexed, and an id that is unknown or whose files are all gone is a 404.
"""

from __future__ import annotations

import logging
import mimetypes

from flask import Blueprint, Response, abort, send_file

from webui import queries, thumbs

bp = Blueprint("photos", __name__)
log = logging.getLogger(__name__)
MAX_ID = 2**63 - 1  # SQLite's integer range; larger ids would be a database error
# Formats the indexer reads that Python's mimetypes table may not know.
EXTRA_TYPES = {
    ".webp": "image/webp", ".heic": "image/heic", ".heif": "image/heif", ".avif": "image/avif",
}


def _located(cid: int):  # noqa: ANN202
    found = queries.photo_file(cid)
    if found is None:
        abort(404, description=f"no indexed photo with id {cid} is on disk")
    return found


@bp.get(f"/image/<int(max={MAX_ID}):cid>")
def image(cid: int) -> Response:
    path, _content = _located(cid)
    suffix = path.suffix.lower()
    mimetype = EXTRA_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0]
    # ETag + conditional: revalidated each time (ids may be reused after a re-index).
    return send_file(path, mimetype=mimetype or "application/octet-stream", conditional=True,
                     etag=True, max_age=None)


@bp.get(f"/thumb/<int(max={MAX_ID}):cid>")
def thumb(cid: int) -> Response:
    path, content = _located(cid)
    config = queries.engine().config
    try:
        thumb_path = thumbs.thumbnail(
            path, config.data_path / "thumbs", content.hash, config.indexer.max_image_pixels
        )
    except thumbs.ThumbnailError as exc:
        log.warning("thumbnail for %s: %s", path, exc)
        abort(404, description=f"photo {cid} can no longer be decoded")
    # The content hash names exactly these bytes: a strong validator.
    return send_file(thumb_path, mimetype="image/jpeg", conditional=True, etag=content.hash,
                     max_age=None)
