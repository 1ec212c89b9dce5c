"""The photos static int8 is calibrated on: up to 300 of the library's, else the sample photos.

Post-training quantisation fixes each activation's int8 range from what real inputs produce;
the user's own photos are the inputs the model will see. They are spread over the library
(every n-th file in path order), not its first folder. Captions calibrate the text tower: the
sample photos' captions, the kind of text a person types into the search box.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAX_PHOTOS = 300
TEXT_BATCH = 8


def library_photos(config, limit: int = MAX_PHOTOS) -> list[Path]:
    """Up to ``limit`` image files under ``config.library.roots``, spread evenly."""
    exts = set(config.library.extensions)
    found: list[Path] = []
    for root in config.library.roots:
        root = Path(root).expanduser()
        if root.is_dir():
            found += [p for p in sorted(root.rglob("*"))
                      if p.suffix.lower() in exts and not any(
                          part.startswith(".") for part in p.relative_to(root).parts)]
            if len(found) > 50 * limit:  # enough to spread over; a huge library is not walked
                break
    if len(found) <= limit:
        return found
    step = len(found) / limit
    return [found[int(i * step)] for i in range(limit)]


def calibration_set(encoder, photos: Sequence[Path] | None):
    """Pixels (normalised as the encoder's processor does) and caption tokens."""
    import torch

    from search.encoders.exported import Calibration
    from search.encoders.pixels import to_model_input
    from search.preprocess import BadImage, decode
    from search.samples import sample_photos

    samples = sample_photos()
    source = "the library's photos"
    pixels = []
    for path in list(photos or [])[:MAX_PHOTOS]:
        try:
            pixels.append(decode(path, encoder.spec, uint8=True).pixels)
        except (BadImage, OSError) as exc:
            log.debug("calibration: skipping %s: %s", path, exc)
    if len(pixels) < 2:
        source = "the sample photos (no library photos yet)"
        pixels = [decode(p.path, encoder.spec, uint8=True).pixels for p in samples[:MAX_PHOTOS]]
    if not pixels:
        from search.errors import DependencyError

        raise DependencyError("int8-static needs photos to calibrate on: index a library first, "
                              "or install the sample photos' packages (pip install scikit-image)")
    x = to_model_input(np.stack(pixels), encoder.spec, "cpu", torch.float32).numpy()
    captions = [c for p in samples for c in p.captions] or ["a photo"]
    texts = [encoder.token_arrays(captions[i:i + TEXT_BATCH])
             for i in range(0, len(captions), TEXT_BATCH)]
    return Calibration(pixels=x, texts=texts, source=f"{len(pixels)} of {source}")
