"""Image-caption pairs for training: decoded once, split by image, batched per epoch.

Images go through the indexer's own decode job (the same hash check, decode and model
preprocessing), so training sees exactly the pixels that search will see. The pixels are
decoded once into a uint8 memory-mapped file beside the checkpoint (resized and cropped, as
the decode workers ship them: exact, and half the bytes of the float16 it used to be), so
later epochs and a resumed run read them back instead of decoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.decode import DecodeJob, content_hash, decode_pool, ordered_map, run_decode_job
from search.errors import InputError
from search.evaluation.captions import CaptionSet
from search.preprocess import DRAFT_FACTOR, BadImage, PreprocessSpec, pixel_shape

MAX_BAD_SHOWN = 3


@dataclass
class Pairs:
    """Captions, the image each one describes, and every image's pixels."""

    # uint8 [images, *pixel_shape(spec)] (``prepare_uint8``): a memory map, or rows of one.
    # Float pixels are taken as already normalised.
    pixels: np.ndarray | _Rows
    captions: list[str]
    caption_image: np.ndarray  # int64 [captions]: the image row of each caption
    spec: PreprocessSpec | None = None  # what normalises uint8 pixels for the model

    @property
    def n_images(self) -> int:
        return int(self.pixels.shape[0])

    def subset(self, images: np.ndarray) -> Pairs:
        """These images and their captions, renumbered 0..len(images)-1."""
        row = np.full(self.n_images, -1, dtype=np.int64)
        row[images] = np.arange(len(images))
        keep = np.flatnonzero(row[self.caption_image] >= 0)
        return Pairs(
            _Rows(self.pixels, images),
            [self.captions[i] for i in keep],
            row[self.caption_image[keep]],
            self.spec,
        )


class _Rows:
    """A lazy row selection of a memory map (fancy indexing would copy it all)."""

    def __init__(self, base: np.ndarray, rows: np.ndarray) -> None:
        self.base, self.rows = base, np.asarray(rows)
        self.shape = (len(self.rows), *base.shape[1:])

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        picked = self.rows[index]
        order = np.argsort(picked)  # read the map in file order, then put back
        out = np.empty((len(picked), *self.base.shape[1:]), dtype=self.base.dtype)
        out[order] = self.base[picked[order]]
        return out


def data_hash(paths: list[Path], captions: CaptionSet) -> tuple[str, list[str]]:
    """One digest of every image's bytes and every caption: what a run was trained on.

    Also returns the per-image content hashes, which the decode job checks the bytes by.
    """
    digest = hashlib.blake2b(digest_size=16)
    hashes = []
    for rel, path in zip(captions.images, paths, strict=True):
        h = content_hash(str(path))
        hashes.append(h)
        digest.update(f"{rel}\0{h}\n".encode())
    for owner, text in zip(captions.caption_image, captions.captions, strict=True):
        digest.update(f"{owner}\0{text}\n".encode())
    return digest.hexdigest(), hashes


def decode_pixels(
    paths: list[Path],
    hashes: list[str],
    spec: PreprocessSpec,
    cache: Path,
    *,
    max_pixels: int,
    draft: bool,
    workers: int,
) -> np.ndarray:
    """Every image's model-ready pixels, from ``cache`` when an earlier run decoded them."""
    if cache.is_file():
        cached = np.load(cache, mmap_mode="r")
        if cached.dtype == np.uint8:  # anything else is an older format: decode again
            return cached
    shape = pixel_shape(spec)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                    shape=(len(paths), *shape))
    jobs = [DecodeJob(str(p), ph, spec, max_pixels, draft)
            for p, ph in zip(paths, hashes, strict=True)]
    bad: list[tuple[Path, BadImage]] = []
    pool = decode_pool(workers) if workers > 0 and len(jobs) > 64 else None
    try:
        for i, result in enumerate(ordered_map(pool, run_decode_job, jobs, window=4 * workers
                                               + 8)):
            if isinstance(result, BadImage):
                bad.append((paths[i], result))
            elif result.pixels is None or result.pixels.shape != shape:
                bad.append((paths[i], BadImage("preprocessing gave an unexpected shape")))
            else:
                out[i] = result.pixels
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if bad:
        listed = "; ".join(f"{p}: {reason}" for p, reason in bad[:MAX_BAD_SHOWN])
        more = " ..." if len(bad) > MAX_BAD_SHOWN else ""
        raise InputError(f"{len(bad)} training images cannot be used: {listed}{more}")
    out.flush()
    del out
    os.replace(partial, cache)
    return np.load(cache, mmap_mode="r")


def split_by_image(n_images: int, val_fraction: float, seed: int) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """Train and validation image rows: every caption of an image falls on one side."""
    if not 0 <= val_fraction < 1:
        raise InputError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n_images)
    n_val = int(round(n_images * val_fraction))
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n_images - n_val < 1:
        raise InputError(f"{n_images} images leave none to train on with --val-fraction "
                         f"{val_fraction}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def epoch_batches(n_captions: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Caption rows in shuffled batches of ``batch_size``; a short last batch is dropped,
    as CLIP does, since a small batch is an easier contrastive task than the others."""
    order = rng.permutation(n_captions)
    return [order[i:i + batch_size] for i in range(0, n_captions - batch_size + 1, batch_size)]


def describe(pairs: Pairs) -> str:
    return f"{pairs.n_images} images, {len(pairs.captions)} captions"


def spec_key(spec: PreprocessSpec) -> str:
    """The pixel cache's name key: the preprocessing and the cache's format, so a float16
    cache of an older version (or another draft factor) is never read as this one."""
    what = {**spec.__dict__, "pixels": "uint8", "draft_factor": DRAFT_FACTOR}
    if what["patches"] is None:  # not NaFlex: the key it had before the field existed
        del what["patches"]
    return hashlib.blake2b(json.dumps(what, sort_keys=True, default=str).encode(),
                           digest_size=6).hexdigest()
