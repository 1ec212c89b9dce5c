"""The text in photos (OCR): read after the CLIP pass by the real RapidOCR models, stored per
content, found by the same query box (fused with CLIP) and by --text alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import pytest
from PIL import Image, ImageDraw, ImageFont

from indexer.pipeline import Indexer
from search import query
from search.engine import Engine
from search.ocr import available
from search.store import Store

pytestmark = [
    pytest.mark.ocr,
    pytest.mark.skipif(not available(), reason="the ocr extra is not installed"),
]

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
# One word per photo, found in no other photo's text.
SIGNS = ["STARBUCKS", "PHARMACY", "BAKERY", "LISBOA", "PARKING", "HOSPITAL", "MUSEUM",
         "TICKETS", "GARAGE", "LIBRARY"]


def sign(background: Path, word: str, size: int, angle: float, out: Path) -> Path:
    """A photo with a sign on it: ``word`` in ``size`` px letters, turned ``angle`` degrees."""
    with Image.open(background) as im:
        photo = im.convert("RGB").resize((800, 600))
    font = ImageFont.truetype(str(FONT), size)
    box = font.getbbox(word)
    w, h = box[2] - box[0] + 24, box[3] - box[1] + 24
    plate = Image.new("RGBA", (w, h), (245, 245, 235, 255))
    ImageDraw.Draw(plate).text((12, 12 - box[1]), word, font=font, fill=(20, 20, 60, 255))
    plate = plate.rotate(angle, expand=True, resample=Image.BICUBIC)
    photo.paste(plate, (120, 220), plate)
    photo.save(out, quality=92)
    return out


def receipt(lines: list[str], out: Path) -> Path:
    font = ImageFont.truetype(str(FONT), 22)
    im = Image.new("RGB", (420, 60 + 34 * len(lines)), (252, 252, 250))
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((24, 24 + 34 * i), line, font=font, fill=(30, 30, 30))
    im.save(out)
    return out


@pytest.fixture(scope="module")
def text_library(tmp_path_factory, samples):
    folder = tmp_path_factory.mktemp("text-photos")
    backgrounds = [p.path for p in samples if not str(p.path).startswith("/usr/share")]
    for i, word in enumerate(SIGNS):
        sign(backgrounds[i % len(backgrounds)], word, size=20 + 3 * i, angle=(-4, 0, 3)[i % 3],
             out=folder / f"sign_{i}.jpg")
    receipt(["COFFEE HOUSE", "Latte 4.50", "Croissant 3.20", "TOTAL 7.70"],
            folder / "receipt.png")
    for photo in samples[:3]:  # photos without text
        shutil.copy2(photo.path, folder / f"plain_{photo.name}{photo.path.suffix}")
    return folder


@pytest.fixture
def indexed(make_config, offline, text_library):
    config = make_config(**{"ocr__enabled": True})
    store = Store(config.db_url)
    summary = Indexer(config, store, offline, progress=False).index([str(text_library)])
    yield config, store, summary
    store.close()


def test_text_is_read_after_the_clip_pass_and_found_by_the_query(indexed, offline):
    config, store, summary = indexed
    assert summary.encoded == 14 and summary.texts_read == 14 and summary.texts_failed == 0
    engine = Engine(config, offline)
    first_plain = first_text = 0
    for i, word in enumerate(SIGNS):
        plain = engine.search(query.build(word.lower(), k=5)).results
        first_plain += Path(plain[0].path).name == f"sign_{i}.jpg"
        alone = engine.search(query.build(None, in_text=word.lower(), k=5)).results
        first_text += bool(alone) and Path(alone[0].path).name == f"sign_{i}.jpg"
    assert first_plain >= 9 and first_text >= 9, (first_plain, first_text)
    hit = engine.search(query.build("coffee receipt", k=3)).results[0]
    assert Path(hit.path).name == "receipt.png"
    assert "text" in hit.matched and "COFFEE" in hit.text
    as_json = hit.as_dict()
    assert as_json["matched"] == hit.matched and as_json["text"] == hit.text
    # --text alone: filters and paging hold.
    page = engine.search(query.build(None, in_text="total latte", k=1)).results
    assert [Path(r.path).name for r in page] == ["receipt.png"] and page[0].matched == ["text"]
    assert not engine.search(query.build(None, in_text="zyxwvut", k=5)).results
    engine.close()


def test_text_is_read_once_per_content(indexed, offline, text_library, tmp_path):
    config, store, _ = indexed
    moved = tmp_path / "moved.jpg"
    shutil.copy2(text_library / "sign_0.jpg", moved)  # a duplicate, elsewhere
    again = Indexer(config, store, offline, progress=False).index([str(text_library),
                                                                  str(moved)])
    assert again.reused == 1 and again.texts_read == 0


def test_a_photo_whose_reading_hangs_is_recorded_and_never_stops_indexing(
    make_config, offline, text_library
):
    config = make_config(**{"ocr__enabled": True, "ocr__time_limit": 0.01})
    store = Store(config.db_url)
    summary = Indexer(config, store, offline, progress=False).index([str(text_library)])
    assert summary.encoded == 14 and summary.texts_failed == summary.texts_read == 14
    counts = store.text_counts()
    (engine_counts,) = counts.values()
    assert engine_counts == {"failed": 14}
    # Failed reads are not retried until the engine changes.
    assert Indexer(config, store, offline, progress=False).index(
        [str(text_library)]).texts_read == 0
    store.close()
