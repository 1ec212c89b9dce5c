"""URLs of the photo routes, for the JSON API and the pages (no route lives here, so every
module that answers with a photo imports this, and none of them each other)."""

from __future__ import annotations

from flask import url_for

from webui import thumbs


def thumb_urls(cid: int, content_hash: str) -> dict:
    """The immutable 1x and 2x thumbnail URLs of a content, for ``<img src srcset>``."""
    one, two = thumbs.SIZES
    return {
        "thumb_url": url_for("photos.thumb_immutable", cid=cid, digest=content_hash, size=one),
        "thumb_url_2x": url_for("photos.thumb_immutable", cid=cid, digest=content_hash, size=two),
    }
