"""Reading the text in photos: RapidOCR, whose PP-OCRv6 detection and recognition models
ship inside its wheel and run on ONNX Runtime (the ``ocr`` extra; PP-OCR is what Immich
uses). No network at run time.

Detection runs on the whole photo (shrunk to ``ocr.max_side``); recognition only on the
boxes detection found, so a photo without text costs detection alone. Lines the recogniser
is less sure of than ``ocr.min_confidence`` are dropped. The text is stored per content with
``ENGINE`` (package version and models), so a better engine re-reads without re-encoding.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
from pathlib import Path

import numpy as np

from search.errors import DependencyError

log = logging.getLogger(__name__)

MODELS = "PP-OCRv6 small"
INSTALL = "pip install 'pixseek[ocr]'"
# Words a query shares with nearly every text; they would match everything.
STOP_WORDS = frozenset(
    "a an and are as at be by for from in is it of on or the this to with my our your".split()
)


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("rapidocr", "onnxruntime"))


def engine_id() -> str:
    """What reads the text: stored with every row, so a change re-reads."""
    try:
        version = importlib.metadata.version("rapidocr")
    except importlib.metadata.PackageNotFoundError:
        version = "missing"
    return f"rapidocr {version} {MODELS}"


def query_words(text: str) -> list[str]:
    """The words of a query worth looking up in photos' text (lower case, no stop words)."""
    words = re.findall(r"\w+", text.lower())
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in STOP_WORDS))


def snippet(text: str, words: list[str], width: int = 80) -> str:
    """A line of ``text`` around the first of ``words`` it holds, else its start."""
    flat = " ".join(text.split())
    lower = flat.lower()
    hits = [i for i in (lower.find(w) for w in words) if i >= 0]
    start = max(0, min(hits) - width // 3) if hits else 0
    piece = flat[start:start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")


class TextReader:
    """One RapidOCR engine (loaded on first use) and the settings it reads with."""

    def __init__(self, min_confidence: float = 0.5, max_side: int = 1600) -> None:
        self.min_confidence = min_confidence
        self.max_side = max_side
        self._engine = None

    def _load(self):
        if self._engine is None:
            if not available():
                raise DependencyError(f"reading text in photos needs the ocr extra: {INSTALL}")
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # one line per photo
            from rapidocr import RapidOCR

            self._engine = RapidOCR(params={
                "Global.log_level": "error",
                "Det.limit_type": "max",
                "Det.limit_side_len": self.max_side,
            })
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        return self._engine

    def read_file(self, path: str | Path) -> str:
        """The text in the photo at ``path``: recognised lines, top to bottom."""
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            im.draft("RGB", (self.max_side, self.max_side))  # JPEG: decode at a smaller scale
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((self.max_side, self.max_side))
            pixels = np.asarray(im)
        return self.read_pixels(pixels)

    def read_pixels(self, rgb: np.ndarray) -> str:
        result = self._load()(rgb[:, :, ::-1])  # OpenCV order: BGR
        texts = getattr(result, "txts", None) or ()
        scores = getattr(result, "scores", None) or ()
        lines = [t.strip() for t, s in zip(texts, scores, strict=False)
                 if s >= self.min_confidence and t.strip()]
        return "\n".join(lines)
