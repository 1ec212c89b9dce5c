"""JPEG thumbnails, made once with Pillow and cached under ``<data_dir>/thumbs/``.

The cache is keyed by content hash, not path or id: a renamed or duplicated photo shares its
thumbnail, and a file whose bytes change gets a new content (and so a new thumbnail) when
it is re-indexed. Deleting the folder loses nothing; thumbnails are remade on demand.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

# search.preprocess also registers the HEIC/AVIF opener when pillow-heif is installed.
from search.preprocess import BadImage, open_image, to_rgb

SIZE = 320  # longest side, pixels
QUALITY = 82


class ThumbnailError(Exception):
    """The source file can no longer be read as an image."""


def cache_path(cache_dir: Path, content_hash: str) -> Path:
    # Two-character shards keep any one folder small for libraries of 100k+ photos.
    return cache_dir / content_hash[:2] / f"{content_hash}-{SIZE}.jpg"


def thumbnail(source: Path, cache_dir: Path, content_hash: str, max_pixels: int) -> Path:
    """The cached thumbnail's path, making it first if needed."""
    if not content_hash.isalnum():  # it names a file: only ever a hex digest from the store
        raise ValueError(f"not a content hash: {content_hash!r}")
    target = cache_path(cache_dir, content_hash)
    if target.is_file():
        return target
    img = make(source, max_pixels)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: two requests racing for one thumbnail never see half a file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            img.save(fh, "JPEG", quality=QUALITY, optimize=True)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def make(source: Path, max_pixels: int) -> Image.Image:
    """Decode at reduced scale (JPEG draft), apply EXIF orientation, RGB, fit in SIZE."""
    try:
        with open_image(source, max_pixels) as img:
            # JPEG only (a no-op otherwise): DCT scaling to the smallest 1/2..1/8 scale
            # that still covers SIZE, far cheaper than a full decode of a 24 Mpx photo.
            img.draft("RGB", (SIZE, SIZE))
            img.load()
            out = to_rgb(ImageOps.exif_transpose(img))
    except BadImage as exc:
        raise ThumbnailError(f"cannot decode {source.name}: {exc}") from None
    out.thumbnail((SIZE, SIZE), Image.Resampling.BICUBIC)
    return out
