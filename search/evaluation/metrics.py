"""Recall@K and rank statistics for text-to-image / image-to-text retrieval.

Pure numpy, computed in chunks of queries so a 25k-caption x 5k-image benchmark never
holds the full similarity matrix in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.errors import InputError

__all__ = ["retrieval_metrics", "summarize_ranks"]


def retrieval_metrics(
    text_emb: np.ndarray,
    image_emb: np.ndarray,
    caption_image: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 1024,
) -> dict:
    """Score both retrieval directions the way Flickr30k / COCO papers do.

    ``text_emb`` [T, d] and ``image_emb`` [I, d] are L2-normalised, so similarity is the
    dot product; ``caption_image[t]`` is the index of caption t's image.

    - text->image: every caption queries all I images; its rank is that of its own image.
      Images without captions stay in the gallery as distractors.
    - image->text: every image with at least one caption queries all T captions; its rank
      is the best rank among its own captions. Images without captions are not queries.

    Ties are counted pessimistically, so a degenerate model (e.g. constant embeddings)
    cannot score well by luck of sort order: rank = 1 + the number of wrong candidates
    whose score is >= the target's score. For image->text the targets are all of the
    image's captions, so two of its own captions tying for first still give rank 1.
    Without ties this equals the usual "position in the sorted list" rank.

    Returns ``{"text_to_image": {...}, "image_to_text": {...}, "n_images": I,
    "n_captions": T}`` where each direction holds ``"R@k"`` (fraction in [0, 1]) for
    every k in ``ks`` plus ``"median_rank"`` and ``"mean_rank"`` (1-based), all plain
    Python floats.
    """
    text, image, owner = _validate(text_emb, image_emb, caption_image)
    ks = _validate_ks(ks)
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk!r}.")
    chunk = int(chunk)

    t2i = _text_to_image_ranks(text, image, owner, chunk)
    i2t = _image_to_text_ranks(text, image, owner, chunk)
    return {
        "text_to_image": summarize_ranks(t2i, ks),
        "image_to_text": summarize_ranks(i2t, ks),
        "n_images": int(image.shape[0]),
        "n_captions": int(text.shape[0]),
    }


def summarize_ranks(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Turn 1-based ranks into R@k fractions, median and mean rank (plain floats)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise InputError("no retrieval queries to summarise; the benchmark has no captions.")
    out: dict[str, float] = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(np.mean(ranks))
    return out


def _text_to_image_ranks(
    text: np.ndarray, image: np.ndarray, owner: np.ndarray, chunk: int
) -> np.ndarray:
    n_text = text.shape[0]
    ranks = np.empty(n_text, dtype=np.int64)
    image_t = image.T  # one transpose, reused by every chunk
    for start in range(0, n_text, chunk):
        stop = min(start + chunk, n_text)
        scores = text[start:stop] @ image_t  # [c, I]
        # Take the target score from the same matrix so it compares exactly equal to
        # itself; a separately computed dot product could differ in the last bit.
        target = scores[np.arange(stop - start), owner[start:stop]]
        # Counts the target itself too, which supplies the "1 +".
        ranks[start:stop] = np.count_nonzero(scores >= target[:, None], axis=1)
    return ranks


def _image_to_text_ranks(
    text: np.ndarray, image: np.ndarray, owner: np.ndarray, chunk: int
) -> np.ndarray:
    queries = np.unique(owner)  # only images that have at least one caption
    ranks = np.empty(queries.size, dtype=np.int64)
    row_of_image = np.full(image.shape[0], -1, dtype=np.int64)
    text_t = text.T
    for start in range(0, queries.size, chunk):
        stop = min(start + chunk, queries.size)
        chunk_images = queries[start:stop]
        scores = image[chunk_images] @ text_t  # [c, T]

        row_of_image[chunk_images] = np.arange(stop - start)
        own_caps = np.flatnonzero(row_of_image[owner] >= 0)  # captions of these images
        own_rows = row_of_image[owner[own_caps]]
        row_of_image[chunk_images] = -1
        own_scores = scores[own_rows, own_caps]

        # Best-scoring own caption per query image.
        best = np.full(stop - start, -np.inf, dtype=scores.dtype)
        np.maximum.at(best, own_rows, own_scores)
        # Everything scoring >= best, minus the image's own captions among them (those
        # tied with best), leaves only wrong captions: rank = 1 + that count.
        at_least_best = np.count_nonzero(scores >= best[:, None], axis=1)
        own_at_best = np.zeros(stop - start, dtype=np.int64)
        np.add.at(own_at_best, own_rows, own_scores >= best[own_rows])
        ranks[start:stop] = 1 + at_least_best - own_at_best
    return ranks


def _as_float_matrix(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InputError(
            f"{what} embeddings must be a 2-D array [count, dim], got shape {arr.shape}."
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{what} embeddings must be numeric, got dtype {arr.dtype}.")
    # float16 would lose ties/precision in the matmul; float32 and float64 stay as they are.
    arr = arr.astype(np.result_type(arr.dtype, np.float32), copy=False)
    if not np.isfinite(arr).all():
        raise InputError(
            f"{what} embeddings contain NaN or infinite values; re-encode the "
            f"{what.lower()}s and check the model output."
        )
    return arr


def _validate(
    text_emb: np.ndarray, image_emb: np.ndarray, caption_image: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    text = _as_float_matrix(text_emb, "Text")
    image = _as_float_matrix(image_emb, "Image")
    n_text, n_image = text.shape[0], image.shape[0]
    if n_text == 0:
        raise InputError("no captions to evaluate; the caption file gave zero captions.")
    if n_image == 0:
        raise InputError("no images to evaluate; the image gallery is empty.")
    if text.shape[1] != image.shape[1]:
        raise InputError(
            f"text embeddings have dimension {text.shape[1]} but image embeddings have "
            f"{image.shape[1]}; encode both with the same model."
        )
    if text.dtype != image.dtype:
        dtype = np.result_type(text.dtype, image.dtype)
        text, image = text.astype(dtype, copy=False), image.astype(dtype, copy=False)

    owner = np.asarray(caption_image)
    if owner.ndim != 1 or owner.shape[0] != n_text:
        raise InputError(
            f"caption_image must list one image index per caption ({n_text}), "
            f"got shape {owner.shape}."
        )
    if not np.issubdtype(owner.dtype, np.integer) or owner.dtype == np.bool_:
        raise InputError(f"caption_image must hold integer image indices, got {owner.dtype}.")
    bad = np.flatnonzero((owner < 0) | (owner >= n_image))
    if bad.size:
        t = int(bad[0])
        raise InputError(
            f"caption_image[{t}] = {int(owner[t])} is out of range for {n_image} images "
            f"({bad.size} bad entries); every caption must point at an image index "
            f"0..{n_image - 1}."
        )
    return text, image, owner.astype(np.int64, copy=False)


def _validate_ks(ks: Sequence[int]) -> tuple[int, ...]:
    try:
        values = tuple(ks)
    except TypeError:
        raise InputError(f"ks must be a sequence of positive integers, got {ks!r}.") from None
    if not values or any(
        isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in values
    ):
        raise InputError(f"ks must be a non-empty list of positive integers, got {ks!r}.")
    return tuple(int(k) for k in values)
