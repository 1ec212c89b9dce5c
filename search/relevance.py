"""Which results are strong matches: a relevance cut calibrated for each model.

Raw cosine scores do not compare across models (the offline model's true captions score
0.08-0.33, CLIP's 0.2-0.35), nor across photos (a busy photo is a little similar to every
text). So a result is judged against its own photo: how far the query's score stands out
from the scores the same model gives that photo for a fixed set of reference texts (the
1000 ImageNet class names). That z-score,

    z = (query . v - mean_r(r . v)) / std_r(r . v)

is the same unit for every model and every photo. From the mean vector and covariance of
the reference vectors it costs two small products per result. An image query is judged
against a sample of the library's own photos instead (image-to-image cosines run higher
than text-to-image ones).

STRONG_Z was measured with the offline model on the 37 captioned sample photos: the best
photo for a nonsense query ("asdfghjkl qwerty", "xyzzy plugh", "lorem ipsum dolor" and six
more) reaches z 1.0-1.7, a photo's own captions have median z 2.5, and short queries for
what a photo shows reach 3.6-5.6 ("a cat" 5.4 on the cat, 0.8 on the next photo).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.encoders.base import Encoder
from search.files import atomic_write

STRONG_Z = 2.0
CHECK_ROWS = 8  # reference texts re-encoded on load to prove a cached file fits the model


@dataclass
class Reference:
    """Mean and covariance of a set of reference vectors: enough for z-scores."""

    mean: np.ndarray  # [dim]
    cov: np.ndarray  # [dim, dim]

    @classmethod
    def of(cls, vectors: np.ndarray) -> Reference:
        vectors = np.asarray(vectors, dtype=np.float64)
        return cls(vectors.mean(axis=0), np.cov(vectors, rowvar=False, bias=True))

    def z_scores(self, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """z of ``query . v`` for each row v of ``vectors`` against ``reference . v``."""
        v = np.asarray(vectors, dtype=np.float64)
        # (v @ cov) * v summed per row is v·cov·v for each v, through BLAS (a plain
        # einsum over the three operands ran 100x slower).
        spread = np.sqrt(np.maximum(((v @ self.cov) * v).sum(axis=1), 1e-12))
        return (v @ query - v @ self.mean) / spread


def reference_texts() -> list[str]:
    """The 1000 ImageNet class names: varied, concrete, and shipped with the package."""
    from search.encoders.imagenet_classes import class_texts

    return [text.split(":", 1)[0] for text in class_texts()]


def text_reference(encoder: Encoder, cache_dir: Path) -> Reference:
    """The encoder's reference texts as a Reference, cached on disk by model id.

    For a folder checkpoint a few rows are re-encoded on load and compared, so one that was
    retrained under the same path gets a fresh reference instead of a stale one. A named
    model (hub id, the offline model's versioned id) is trusted: a search then encodes
    nothing but its query.
    """
    texts = reference_texts()
    key = hashlib.sha256(f"{encoder.model_id}\n{len(texts)}".encode()).hexdigest()[:16]
    path = cache_dir / f"relevance-{key}.npz"
    try:
        cached = np.load(path)
        if not Path(encoder.model_id).is_dir():
            return Reference(cached["mean"], cached["cov"])
        fresh = encoder.encode_texts(texts[:CHECK_ROWS])
        if cached["check"].shape == fresh.shape and np.allclose(cached["check"], fresh, atol=1e-3):
            return Reference(cached["mean"], cached["cov"])
    except (OSError, ValueError, KeyError):
        pass
    vectors = encoder.encode_texts(texts)
    ref = Reference.of(vectors)
    try:
        with atomic_write(path) as fh:
            np.savez(fh, mean=ref.mean, cov=ref.cov, check=vectors[:CHECK_ROWS])
    except OSError:
        pass  # a read-only cache only costs the recomputation
    return ref
