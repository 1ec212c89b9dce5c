"""Prompt ensembles for zero-shot classification, as in the CLIP paper.

A label's text embedding is the mean of its embeddings under many templates ("a photo of
a {}.", "a drawing of the {}.", ...), each normalised, and the mean normalised again. The
built-in set is OpenAI's 80 ImageNet templates (``data/imagenet_templates.txt``); a person
can give their own file, one template per line with ``{}`` where the label goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from search.encoders.base import Encoder
from search.errors import InputError

BUILTIN = "imagenet"
# 80 templates x many labels can be thousands of texts: encode them a batch at a time.
BATCH_SIZE = 256


def parse_templates(text: str, source: str) -> list[str]:
    """One template per line; blank lines and ``#`` comments are skipped."""
    templates = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{}" not in line:
            raise InputError(
                f"templates {source}: line {number} has no {{}} where the label goes: {line!r}"
            )
        templates.append(line)
    if not templates:
        raise InputError(
            f"templates {source} holds no templates: write one per line, with {{}} where "
            "the label goes"
        )
    return templates


def load_templates(spec: str | None) -> list[str] | None:
    """None (labels as they are), ``"imagenet"`` (the built-in 80) or a templates file."""
    if spec is None:
        return None
    if spec == BUILTIN:
        text = (resources.files("search") / "data" / "imagenet_templates.txt").read_text("utf-8")
        return parse_templates(text, "imagenet")
    try:
        text = Path(spec).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(
            f"cannot read templates file {spec}: {reason} (give '{BUILTIN}' or a text file, "
            "one template per line with {} where the label goes)"
        ) from None
    return parse_templates(text, f"file {spec}")


def fill(template: str, label: str) -> str:
    # Not str.format: a template may hold other braces, and a label may too.
    return template.replace("{}", label)


def label_embeddings(
    encoder: Encoder, labels: Sequence[str], templates: Sequence[str] | None
) -> np.ndarray:
    """[len(labels), dim] unit vectors: each label as is, or its template ensemble."""
    if templates is None:
        return encoder.encode_texts(list(labels))
    if not labels:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    texts = [fill(t, label) for label in labels for t in templates]
    vecs = np.concatenate(
        [encoder.encode_texts(texts[i:i + BATCH_SIZE]) for i in range(0, len(texts), BATCH_SIZE)]
    )
    vecs = vecs.reshape(len(labels), len(templates), -1)
    vecs = _normalise(vecs)  # encoders promise unit vectors; the recipe relies on it
    return _normalise(vecs.mean(axis=1)).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
