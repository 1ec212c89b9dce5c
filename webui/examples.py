"""Images uploaded to search by example, kept on disk so that such a search is a plain URL.

POST / stores the upload and redirects to ``/?example=<sha256>``: the results page can then
show the image, be reloaded, paged, filtered and shared like any other search. Files live in
``<data_dir>/examples/<sha256>.<ext>``; at most KEEP of them, the least recently used go
first. A digest from a request names a file only once it is checked to be 64 hex digits,
so no path is ever taken from a request (architecture invariant 6).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from search.errors import InputError
from search.files import atomic_write
from search.preprocess import BadImage, open_image
from webui import service

KEEP = 200
_DIGEST = re.compile(r"[0-9a-f]{64}")
# Pillow's format name -> the extension the file is stored (and served) under.
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp",
              "BMP": "bmp", "TIFF": "tif", "HEIF": "heic", "AVIF": "avif"}


def folder() -> Path:
    return service.engine().config.data_path / "examples"


def save(data: bytes) -> str:
    """Check that ``data`` is an image (InputError with the engine's words if not), store it
    and answer its digest."""
    try:
        # Decoded as the engine would, without the model: the redirect's search encodes it.
        with open_image(data, service.engine().config.indexer.max_image_pixels) as img:
            img.load()
            fmt = img.format
    except BadImage as exc:
        raise InputError(f"the uploaded image is not usable: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    where = folder()
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{digest}.{EXTENSIONS.get(fmt or '', 'img')}"
    if path.exists():
        os.utime(path)  # used again: it is kept longer
    else:
        with atomic_write(path) as out:  # a concurrent reader never sees half a file
            out.write(data)
    _prune(where)
    return digest


def find(digest: str | None) -> Path | None:
    """The stored file of an example, or None (a malformed digest is never looked up)."""
    if not _DIGEST.fullmatch(digest or ""):
        return None
    return next(folder().glob(f"{digest}.*"), None)


def load(digest: str) -> bytes:
    path = find(digest)
    try:
        if path is not None:
            return path.read_bytes()
    except FileNotFoundError:
        pass  # pruned since it was found
    raise InputError("that example image is no longer kept (the server keeps the last "
                     f"{KEEP}): upload it again to search by it")


def _prune(where: Path) -> None:
    files = []
    for path in where.glob("[0-9a-f]*.*"):  # not the .upload- files being written
        try:
            files.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            pass  # another request pruned it
    for _mtime, path in sorted(files)[:-KEEP]:
        path.unlink(missing_ok=True)
