"""Tests for the real sample photos shipped inside installed packages."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from benchmarks.photos import make_benchmark_photos
from search.samples import (
    OPENCV_SAMPLES_ENV,
    SOURCES,
    TSV_PATH,
    SamplePhoto,
    copy_sample_photos,
    opencv_data_dir,
    sample_photos,
    write_captions_csv,
)


@pytest.fixture(scope="module")
def photos() -> list[SamplePhoto]:
    return sample_photos()


def test_table_is_well_formed() -> None:
    with TSV_PATH.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["name", "source", "relpath", "caption_1", "caption_2", "caption_3"]
    names = [row[0] for row in rows[1:]]
    assert len(names) == len(set(names))
    for row in rows[1:]:
        assert len(row) == 6, row
        name, source, relpath, *captions = row
        assert source in SOURCES
        assert Path(relpath).suffix.lower() in (".png", ".jpg", ".jpeg")
        for caption in captions:
            assert caption.strip() == caption and caption
            assert name.lower() not in caption.lower()
            assert name.replace("_", " ").lower() not in caption.lower()
            assert Path(relpath).name.lower() not in caption.lower()


def test_enough_photos_found(photos: list[SamplePhoto]) -> None:
    # A machine without Debian's opencv-doc gets only the photos from Python packages.
    minimum = 25 if opencv_data_dir() else 10
    assert len(photos) >= minimum, [p.name for p in photos]
    assert len({p.name for p in photos}) == len(photos)
    for photo in photos:
        assert photo.path.is_file()


def test_every_photo_has_three_captions(photos: list[SamplePhoto]) -> None:
    for photo in photos:
        assert isinstance(photo.captions, tuple)
        assert len(photo.captions) == 3, photo.name
        assert all(c.strip() for c in photo.captions), photo.name
        assert len(set(photo.captions)) == 3, photo.name


def test_photos_open_with_pillow(photos: list[SamplePhoto]) -> None:
    for photo in photos:
        with Image.open(photo.path) as im:
            im.verify()


def test_copy_is_idempotent(tmp_path: Path, photos: list[SamplePhoto]) -> None:
    first = copy_sample_photos(tmp_path)
    assert [p.name for p in first] == [p.name + p.path.suffix.lower() for p in photos]
    for copied, photo in zip(first, photos, strict=True):
        assert copied.read_bytes() == photo.path.read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in first}
    second = copy_sample_photos(tmp_path)
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in second} == mtimes
    assert sorted(tmp_path.iterdir()) == sorted(first)


def test_captions_csv_matches_copied_files(tmp_path: Path, photos: list[SamplePhoto]) -> None:
    copied = copy_sample_photos(tmp_path / "photos")
    out = write_captions_csv(tmp_path / "captions.csv")
    assert out == tmp_path / "captions.csv"
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["image", "caption"]
    assert len(rows) == sum(len(p.captions) for p in photos)
    assert {r["image"] for r in rows} == {p.name for p in copied}
    assert all(r["caption"] for r in rows)
    # An existing folder gets captions.csv written into it.
    assert write_captions_csv(tmp_path) == out


def _pixel_hash(path: Path) -> str:
    with Image.open(path) as im:
        return hashlib.sha256(ImageOps.exif_transpose(im).tobytes()).hexdigest()


def test_benchmark_photos(tmp_path: Path) -> None:
    paths = make_benchmark_photos(tmp_path, count=12, long_side=1200)
    assert len(paths) == 12
    assert len(set(paths)) == 12
    assert sorted(tmp_path.iterdir()) == sorted(paths)
    rotated = 0
    for path in paths:
        assert path.suffix == ".jpg"
        with Image.open(path) as im:
            assert im.format == "JPEG"
            assert im.mode == "RGB"
            assert max(im.size) == 1200
            if im.getexif().get(0x0112) == 6:
                rotated += 1
                assert im.width > im.height  # displayed as portrait after transposing
            im.load()
    assert rotated >= 1
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}) == 12
    assert len({_pixel_hash(p) for p in paths}) == 12

    mtimes = [p.stat().st_mtime_ns for p in paths]
    again = make_benchmark_photos(tmp_path, count=12, long_side=1200)
    assert again == paths
    assert [p.stat().st_mtime_ns for p in again] == mtimes


def test_benchmark_photos_are_deterministic(tmp_path: Path) -> None:
    a = make_benchmark_photos(tmp_path / "a", count=3, long_side=64)
    b = make_benchmark_photos(tmp_path / "b", count=3, long_side=64)
    assert [p.name for p in a] == [p.name for p in b]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    # A longer run starts with the same files.
    c = make_benchmark_photos(tmp_path / "c", count=5, long_side=64)
    assert [p.read_bytes() for p in c[:3]] == [p.read_bytes() for p in a]


def test_opencv_photos_come_from_opencvs_own_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OPENCV_SAMPLES_DATA_PATH (a path list, as OpenCV reads it) decides where OpenCV's
    # sample photos are; its first existing folder wins.
    with TSV_PATH.open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["source"] == "opencv-doc"]
    first = rows[0]
    data = tmp_path / "opencv-data"
    data.mkdir()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(data / first["relpath"])
    monkeypatch.setenv(OPENCV_SAMPLES_ENV, f"{tmp_path / 'missing'}:{data}")
    found = {p.name: p for p in sample_photos()}
    assert found[first["name"]].path == data / first["relpath"]
    assert not any(r["name"] in found for r in rows[1:])  # not in that folder

    monkeypatch.setenv(OPENCV_SAMPLES_ENV, str(tmp_path / "missing"))
    assert opencv_data_dir() is None
    assert not any(r["name"] in {p.name for p in sample_photos()} for r in rows)
