"""Zero-shot probabilities you can trust: a logit scale calibrated per model.

CLIP turns cosines into probabilities with ``softmax(logit_scale x cosine)``; its learned
scale is 100. A model whose cosines spread wider (the offline model) then says 100 % for
nearly every photo, wrong answers included. Temperature scaling (Guo et al., "On
Calibration of Modern Neural Networks", 2017) fixes that with one number per model: the
scale that minimises the negative log-likelihood of the right caption, here on the real
sample photos and their captions (``search.samples``), each photo against one of its own
captions and DISTRACTORS captions of other photos.

The scale is cached per model under the user cache (``~/.cache/pixseek``), keyed by the
model id and checked against a few re-encoded captions, so a checkpoint retrained under the
same path is calibrated again; a cache written by another VERSION of this method is too.

``probabilities(image_vecs, text_vecs, scale_or_encoder)`` is the one function other code
calls for text-prompt probabilities.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from search.encoders.base import Encoder
from search.errors import PixseekError
from search.files import atomic_write

log = logging.getLogger(__name__)

VERSION = 1
DISTRACTORS = 4  # each photo against its own caption and 4 others: 5 choices
DRAWS = 20  # random sets of distractors per (photo, caption)
SEED = 0
CHECK_CAPTIONS = 2  # re-encoded on load: a retrained checkpoint is noticed
BINS = 10  # for the expected calibration error
# The scale is searched on a log grid, then refined around the best point.
SCALE_RANGE = (0.1, 1000.0)


@dataclass
class Calibration:
    model: str
    logit_scale: float
    photos: int
    trials: int
    nll_before: float  # with the model's own logit scale
    nll_after: float
    version: int = VERSION

    @property
    def temperature(self) -> float:
        """``softmax(cosine / temperature)``: the scale's inverse (CLIP's is 0.01)."""
        return 1.0 / self.logit_scale


def probabilities(
    image_vecs: np.ndarray, text_vecs: np.ndarray, scale: float | Encoder
) -> np.ndarray:
    """[images, texts] probabilities, each row a softmax over the texts of
    ``scale x cosine``. ``scale`` is a logit scale, or an encoder (its calibrated one).
    Vectors are unit length, as every encoder gives them."""
    if isinstance(scale, Encoder):
        scale = logit_scale(scale)
    images = np.atleast_2d(np.asarray(image_vecs, dtype=np.float64))
    texts = np.atleast_2d(np.asarray(text_vecs, dtype=np.float64))
    logits = float(scale) * (images @ texts.T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def logit_scale(encoder: Encoder, cache: Path | None = None) -> float:
    """The encoder's calibrated logit scale; its own when no sample photos are here."""
    try:
        return calibration(encoder, cache).logit_scale
    except PixseekError as exc:
        log.warning("zero-shot probabilities use %s's own logit scale %g, uncalibrated: %s",
                    encoder.model_id, encoder.logit_scale, exc)
        return float(encoder.logit_scale)


def calibration(encoder: Encoder, cache: Path | None = None) -> Calibration:
    """The encoder's calibration, from the cache when it holds this model's (same
    version, same caption vectors), else measured on the sample photos and cached."""
    from search.files import cache_dir
    from search.samples import require_photos

    photos = require_photos(None)
    captions = [c for p in photos for c in p.captions]
    key = hashlib.sha256(f"{encoder.model_id}\n{len(photos)}".encode()).hexdigest()[:16]
    path = (cache or cache_dir()) / f"calibration-{key}.json"
    check = encoder.encode_texts(captions[:CHECK_CAPTIONS])
    hit = _read(path, encoder.model_id, check)
    if hit is not None:
        return hit
    log.info("calibrating %s's zero-shot probabilities on %d sample photos (once)",
             encoder.model_id, len(photos))
    found = calibrate(encoder, photos)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            fh.write(json.dumps({**asdict(found), "check": check.round(5).tolist()}).encode())
    except OSError:
        pass  # a read-only cache only costs the recomputation
    return found


def _read(path: Path, model: str, check: np.ndarray) -> Calibration | None:
    try:
        data = json.loads(path.read_text())
        cached_check = np.asarray(data.pop("check"), dtype=np.float32)
        found = Calibration(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (found.version != VERSION or found.model != model
            or cached_check.shape != check.shape or not np.allclose(cached_check, check,
                                                                    atol=1e-3)
            or not (math.isfinite(found.logit_scale) and found.logit_scale > 0)):
        return None
    return found


def calibrate(encoder: Encoder, photos: Sequence | None = None) -> Calibration:
    """Measure the scale on ``photos`` (default: every sample photo on this machine)."""
    from search.samples import require_photos

    photos = require_photos(photos)
    similarity, owner = similarities(encoder, photos)
    trials = choices(similarity, owner, np.random.default_rng(SEED), DRAWS)
    scale = fit_scale(trials)
    return Calibration(encoder.model_id, scale, len(photos), len(trials),
                       nll(trials, encoder.logit_scale), nll(trials, scale))


def similarities(encoder: Encoder, photos: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """[photos, captions] cosines, and each caption's photo."""
    from search.preprocess import decode

    pixels = [decode(p.path.read_bytes(), encoder.spec, draft=False, uint8=True).pixels
              for p in photos]
    images = np.concatenate([encoder.encode_pixels(np.stack(pixels[i:i + 16]))
                             for i in range(0, len(pixels), 16)])
    captions = [c for p in photos for c in p.captions]
    owner = np.array([i for i, p in enumerate(photos) for _ in p.captions])
    return images @ encoder.encode_texts(captions).T, owner


def choices(similarity: np.ndarray, owner: np.ndarray, rng: np.random.Generator,
            draws: int = 1, among: Sequence[int] | None = None) -> np.ndarray:
    """[trials, 1 + DISTRACTORS] cosines: a photo and one of its captions (column 0), and
    DISTRACTORS captions of other photos (of ``among``, default all)."""
    among = np.arange(similarity.shape[0]) if among is None else np.asarray(among)
    rows = []
    for photo in among:
        others = np.flatnonzero(np.isin(owner, among) & (owner != photo))
        if len(others) < DISTRACTORS:
            continue
        for caption in np.flatnonzero(owner == photo):
            for _ in range(draws):
                pick = rng.choice(others, DISTRACTORS, replace=False)
                rows.append(np.concatenate([[similarity[photo, caption]],
                                            similarity[photo, pick]]))
    if not rows:
        raise PixseekError(f"too few sample photos to calibrate: need {DISTRACTORS + 1}")
    return np.asarray(rows, dtype=np.float64)


def nll(trials: np.ndarray, scale: float) -> float:
    """Mean negative log-likelihood of column 0 (the right caption) at ``scale``."""
    logits = scale * trials
    top = logits.max(axis=1)
    log_norm = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    return float(np.mean(log_norm - logits[:, 0]))


def fit_scale(trials: np.ndarray) -> float:
    """The scale minimising ``nll`` (convex in the scale: a grid, then a finer one)."""
    low, high = np.log(SCALE_RANGE[0]), np.log(SCALE_RANGE[1])
    for _ in range(3):
        grid = np.linspace(low, high, 61)
        losses = [nll(trials, math.exp(g)) for g in grid]
        best = int(np.argmin(losses))
        low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    return float(math.exp(grid[best]))


def measure(trials: np.ndarray, scale: float) -> dict:
    """Accuracy, mean top probability, expected calibration error (BINS equal-width bins),
    the NLL and the highest probability given to a wrong answer, at ``scale``."""
    logits = scale * trials
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    top, right = probs.max(axis=1), probs.argmax(axis=1) == 0
    bins = np.minimum((top * BINS).astype(int), BINS - 1)
    ece = sum(abs(top[bins == b].mean() - right[bins == b].mean()) * np.mean(bins == b)
              for b in range(BINS) if np.any(bins == b))
    return {"accuracy": float(right.mean()), "mean_top": float(top.mean()),
            "ece": float(ece), "nll": nll(trials, scale),
            "max_wrong": float(top[~right].max()) if np.any(~right) else 0.0,
            "trials": len(trials)}
