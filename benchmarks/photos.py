"""Camera-size benchmark JPEGs made from the real sample photos that packages ship.

Benchmarks and tests need many large photos (4000 px, EXIF-rotated, varied crops) to
measure decoding and indexing; the project ships no image files, so they are rendered from
``search.samples`` deterministically and cached. Scaffolding for measuring, not part of the
product, so it lives here and not in ``search``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from search.errors import InputError
from search.files import atomic_write
from search.samples import SamplePhoto, require_photos

ORIENTATION_TAG = 0x0112
JPEG_QUALITY = 90


@dataclass(frozen=True)
class _Variant:
    """How one benchmark photo is derived from its source photo."""

    index: int
    photo: SamplePhoto
    aspect: float  # upright width / height: 4:3, 3:4 or the source's own
    scale: float  # crop size relative to the largest crop of that aspect
    fx: float  # crop position, 0..1 of the free room horizontally
    fy: float  # crop position, 0..1 of the free room vertically
    flip: bool
    resample: Image.Resampling
    rotated: bool  # stored rotated with EXIF orientation 6, like a phone held upright

    @property
    def filename(self) -> str:
        return f"bench_{self.index:04d}_{self.photo.name}.jpg"


def _plan(photos: list[SamplePhoto], count: int) -> list[_Variant]:
    """Deterministic, pairwise different variants for ``count`` benchmark photos."""
    rng = random.Random(0)
    used: set[tuple[object, ...]] = set()
    variants: list[_Variant] = []
    for index in range(count):
        photo = photos[index % len(photos)]
        rotated = index % 10 == 9
        while True:
            if rotated:
                aspect = 3 / 4  # portrait once displayed, landscape as stored
            else:
                aspect = rng.choice((4 / 3, 3 / 4, 0.0))  # 0.0: the photo's own aspect
            scale = round(rng.uniform(0.55, 1.0), 3)
            fx, fy = round(rng.random(), 3), round(rng.random(), 3)
            flip = rng.random() < 0.5
            resample = rng.choice((Image.Resampling.LANCZOS, Image.Resampling.BICUBIC))
            key = (photo.name, aspect, scale, fx, fy, flip)
            if key not in used:
                used.add(key)
                break
        variants.append(_Variant(index, photo, aspect, scale, fx, fy, flip, resample, rotated))
    return variants


def _load_rgb(path: Path) -> Image.Image:
    """The image at ``path`` as RGB, transparency flattened onto white."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            flat = Image.new("RGB", rgba.size, "white")
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return im.convert("RGB")


def _render(variant: _Variant, long_side: int, dest: Path) -> None:
    """Write one benchmark JPEG for ``variant``."""
    src = _load_rgb(variant.photo.path)
    width, height = src.size
    aspect = variant.aspect or width / height
    if aspect >= 1:
        size = (long_side, max(1, round(long_side / aspect)))
    else:
        size = (max(1, round(long_side * aspect)), long_side)
    crop_w = min(width, height * aspect) * variant.scale
    crop_h = crop_w / aspect
    x0 = (width - crop_w) * variant.fx
    y0 = (height - crop_h) * variant.fy
    box = (x0, y0, x0 + crop_w, y0 + crop_h)
    # Upscaling (the usual case for these small sources) always uses LANCZOS.
    resample = Image.Resampling.LANCZOS if crop_w < size[0] else variant.resample
    out = src.resize(size, resample, box=box)
    src.close()
    if variant.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    exif = Image.Exif()
    if variant.rotated:
        # Stored turned a quarter to the left; orientation 6 says "turn right to display".
        out = out.transpose(Image.Transpose.ROTATE_90)
        exif[ORIENTATION_TAG] = 6
    with atomic_write(dest) as fh:
        out.save(fh, "JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    out.close()


def make_benchmark_photos(dest: Path, count: int = 240, long_side: int = 4000) -> list[Path]:
    """Make ``count`` camera-size JPEGs from the sample photos; returns their paths.

    Each file is a different crop (4:3, 3:4 or the source's aspect), optionally mirrored,
    resampled to ``long_side`` pixels on its long side. Every 10th file is stored rotated
    with EXIF orientation 6. Deterministic; files that already exist are kept as they are.
    """
    if count < 0:
        raise InputError(f"count must be 0 or more, not {count}")
    if long_side < 16:
        raise InputError(f"long_side must be at least 16 pixels, not {long_side}")
    if count == 0:
        return []
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for variant in _plan(require_photos(None), count):
        target = dest / variant.filename
        if not target.is_file():
            _render(variant, long_side, target)
        paths.append(target)
    return paths
