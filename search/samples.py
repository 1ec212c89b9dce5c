"""Real sample photographs for demos, tests and benchmarks.

The project ships no image files of its own. Instead, ``data/sample_photos.tsv`` lists real
photographs that come inside installed packages (scikit-image, scikit-learn, matplotlib)
and Debian's ``opencv-doc``, each with three captions a person might type into a search box.
Photos whose package is not installed on this machine are silently left out.
"""

from __future__ import annotations

import csv
import importlib.util
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

from search.errors import InputError, PixseekError
from search.files import atomic_write

TSV_PATH = Path(__file__).resolve().parent / "data" / "sample_photos.tsv"
OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
SOURCES = ("skimage", "sklearn", "matplotlib", "opencv-doc")
CAPTIONS_CSV_NAME = "captions.csv"
ORIENTATION_TAG = 0x0112
JPEG_QUALITY = 90


@dataclass(frozen=True)
class SamplePhoto:
    """One real photograph on this machine and its captions."""

    name: str
    path: Path
    captions: tuple[str, ...]

    @property
    def filename(self) -> str:
        """The name this photo gets when copied: ``<name><ext>``."""
        return self.name + self.path.suffix.lower()


@cache
def _source_dir(source: str) -> Path | None:
    """Where ``source``'s files live on this machine, or None when it is not installed."""
    if source == "opencv-doc":
        return OPENCV_DOC_DATA if OPENCV_DOC_DATA.is_dir() else None
    if source not in SOURCES:
        raise PixseekError(f"{TSV_PATH}: unknown sample photo source {source!r}; "
                           f"expected one of {SOURCES}")
    # find_spec on a top-level name locates the package without importing it.
    spec = importlib.util.find_spec(source)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _read_tsv(path: Path = TSV_PATH) -> list[dict[str, str]]:
    """The rows of the sample photo table."""
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def sample_photos() -> list[SamplePhoto]:
    """The listed sample photos whose files exist on this machine, in table order."""
    photos: list[SamplePhoto] = []
    seen: set[str] = set()
    for row in _read_tsv():
        name = row["name"]
        if name in seen:
            raise PixseekError(f"duplicate sample photo name {name!r} in {TSV_PATH}")
        seen.add(name)
        base = _source_dir(row["source"])
        if base is None:
            continue
        path = base / row["relpath"]
        if not path.is_file():
            continue
        captions = tuple(row[k].strip() for k in ("caption_1", "caption_2", "caption_3"))
        photos.append(SamplePhoto(name=name, path=path, captions=captions))
    return photos


def _require_photos(photos: Sequence[SamplePhoto] | None) -> list[SamplePhoto]:
    """``photos``, or all sample photos on this machine; fails when there are none."""
    found = list(sample_photos() if photos is None else photos)
    if not found:
        raise PixseekError(
            "no sample photos found on this machine: install scikit-image, scikit-learn or "
            "matplotlib (pip install -e '.[test]'), or the Debian package opencv-doc"
        )
    return found


def copy_sample_photos(dest: Path, photos: Sequence[SamplePhoto] | None = None) -> list[Path]:
    """Copy the sample photos into ``dest`` as ``<name><ext>``; skips files already there."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []
    for photo in _require_photos(photos):
        target = dest / photo.filename
        if not (target.is_file() and target.stat().st_size == photo.path.stat().st_size):
            with atomic_write(target) as fh, photo.path.open("rb") as src:
                shutil.copyfileobj(src, fh)
        copied.append(target)
    return copied


def write_captions_csv(dest: Path, photos: Sequence[SamplePhoto] | None = None) -> Path:
    """Write the captioned benchmark set as a CSV ``image,caption``, one row per caption.

    ``dest`` is the CSV file, or an existing folder to write ``captions.csv`` into. Image
    names match the files that :func:`copy_sample_photos` writes.
    """
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / CAPTIONS_CSV_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "caption"])
        for photo in _require_photos(photos):
            for caption in photo.captions:
                writer.writerow([photo.filename, caption])
    return dest


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
    for variant in _plan(_require_photos(None), count):
        target = dest / variant.filename
        if not target.is_file():
            _render(variant, long_side, target)
        paths.append(target)
    return paths
