"""JPEG thumbnails, made once with Pillow and cached under ``<data_dir>/thumbs/``.

The cache is keyed by content hash and size, not path or id: a renamed or duplicated photo
shares its thumbnails, and a file whose bytes change gets a new content (and so new
thumbnails) when it is re-indexed. Deleting the folder loses nothing; thumbnails are remade
on demand. Two sizes: 1x for ordinary screens and 2x for high-density ones.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from search.files import atomic_write

# search.preprocess also registers the HEIC/AVIF opener when pillow-heif is installed.
from search.preprocess import BadImage, open_image, to_rgb

SIZE = 320  # longest side, pixels, at 1x
SIZES = (SIZE, 2 * SIZE)  # 1x and 2x: the only sizes made, so the cache stays bounded
QUALITY = 82


class ThumbnailError(Exception):
    """The source file can no longer be read as an image."""


def cache_path(cache_dir: Path, content_hash: str, size: int = SIZE) -> Path:
    # Two-character shards keep any one folder small for libraries of 100k+ photos.
    return cache_dir / content_hash[:2] / f"{content_hash}-{size}.jpg"


def thumbnail(
    source: Path, cache_dir: Path, content_hash: str, max_pixels: int, size: int = SIZE
) -> Path:
    """The cached thumbnail's path, making it first if needed."""
    if not content_hash.isalnum():  # it names a file: only ever a hex digest from the store
        raise ValueError(f"not a content hash: {content_hash!r}")
    if size not in SIZES:
        raise ValueError(f"thumbnail size must be one of {SIZES}, not {size!r}")
    target = cache_path(cache_dir, content_hash, size)
    if target.is_file():
        return target
    img = make(source, max_pixels, size)
    # Two requests racing for one thumbnail never see half a file.
    with atomic_write(target) as fh:
        img.save(fh, "JPEG", quality=QUALITY, optimize=True)
    return target


def make(source: Path, max_pixels: int, size: int = SIZE) -> Image.Image:
    """Decode at reduced scale (JPEG draft), apply EXIF orientation, RGB, fit in ``size``.

    Never enlarged: a photo smaller than ``size`` keeps its own dimensions.
    """
    try:
        with open_image(source, max_pixels) as img:
            # JPEG only (a no-op otherwise): DCT scaling to the smallest 1/2..1/8 scale
            # that still covers size, far cheaper than a full decode of a 24 Mpx photo.
            img.draft("RGB", (size, size))
            img.load()
            out = to_rgb(ImageOps.exif_transpose(img))
    except BadImage as exc:
        raise ThumbnailError(f"cannot decode {source.name}: {exc}") from None
    out.thumbnail((size, size), Image.Resampling.BICUBIC)
    return out
