"""Real sample photographs for demos, tests and benchmarks.

The project ships no image files of its own. Instead, ``data/sample_photos.tsv`` lists real
photographs that come inside installed packages (scikit-image, scikit-learn, matplotlib)
and OpenCV's sample data, each with three captions a person might type into a search box.
Photos whose package is not installed on this machine are silently left out.

OpenCV's sample photos are found the way OpenCV's own ``cv::samples::findFile`` finds them:
through the folders listed in ``OPENCV_SAMPLES_DATA_PATH``. Without that variable, the
folders where Linux distributions' documentation packages put them (Debian's and Ubuntu's
``opencv-doc``) are looked at.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from search.errors import PixseekError
from search.files import atomic_write

TSV_PATH = Path(__file__).resolve().parent / "data" / "sample_photos.tsv"
# OpenCV's variable for its sample data: folders separated by os.pathsep.
OPENCV_SAMPLES_ENV = "OPENCV_SAMPLES_DATA_PATH"
# Where packaged OpenCV docs keep the sample data when the variable is not set.
OPENCV_PACKAGED_DATA = (Path("/usr/share/doc/opencv-doc/examples/data"),)
SOURCES = ("skimage", "sklearn", "matplotlib", "opencv-doc")
CAPTIONS_CSV_NAME = "captions.csv"


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


def opencv_data_dir() -> Path | None:
    """The first folder of OpenCV sample data on this machine, or None."""
    listed = os.environ.get(OPENCV_SAMPLES_ENV, "")
    folders = [Path(p) for p in listed.split(os.pathsep) if p] or OPENCV_PACKAGED_DATA
    return next((f for f in folders if f.is_dir()), None)


def _source_dir(source: str) -> Path | None:
    """Where ``source``'s files live on this machine, or None when it is not installed."""
    if source == "opencv-doc":
        return opencv_data_dir()
    return _package_dir(source)


@cache
def _package_dir(source: str) -> Path | None:
    """The folder of the installed Python package ``source``, or None."""
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


def sample_captions() -> list[str]:
    """Every caption of the table, whether or not its photo is on this machine."""
    keys = ("caption_1", "caption_2", "caption_3")
    return [row[k].strip() for row in _read_tsv() for k in keys if row[k].strip()]


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


def require_photos(photos: Sequence[SamplePhoto] | None) -> list[SamplePhoto]:
    """``photos``, or all sample photos on this machine; fails when there are none."""
    found = list(sample_photos() if photos is None else photos)
    if not found:
        raise PixseekError(
            "no sample photos found on this machine: install scikit-image, scikit-learn or "
            "matplotlib (pip install -e '.[test]'), or the Debian package opencv-doc (or point "
            f"{OPENCV_SAMPLES_ENV} at OpenCV's samples/data folder)"
        )
    return found


def copy_sample_photos(dest: Path, photos: Sequence[SamplePhoto] | None = None) -> list[Path]:
    """Copy the sample photos into ``dest`` as ``<name><ext>``; skips files already there."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []
    for photo in require_photos(photos):
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
        for photo in require_photos(photos):
            for caption in photo.captions:
                writer.writerow([photo.filename, caption])
    return dest
