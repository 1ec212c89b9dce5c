"""The queries an approximate index is tuned and judged on, kept per model in the data dir.

Recall depends on where queries fall. CLIP-family text embeddings sit apart from image
embeddings (the modality gap), so a search depth tuned on copies of library vectors misses
many of a text query's best matches. So the index is tuned on what this engine is asked:

- **seed** queries: the model's own text embeddings of reference texts (the 1000 ImageNet
  class names, some as "a photo of ..." sentences, and the sample photos' captions), written
  once per model by whoever holds the encoder (the indexer, before it builds the index);
- **served** queries: a bounded reservoir sample of the query vectors searches answered, per
  kind (``text``, ``image``): SERVED_MAX each, flushed to disk now and then.

Every set is split in two by position (even rows tune, odd rows judge), so the depth is not
fitted to the queries that measure its recall. Image queries also include copies of library
vectors ("similar to this photo"), which the index samples itself.

The files live beside the index folders (``query-sample-<model>/``), not inside them: the
index is a cache that may be deleted; the sample of real traffic is worth keeping. Losing it
costs nothing but tuning quality. Writes are atomic; two processes flushing at once may
drop a few of each other's samples, which a sample can afford.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search.files import atomic_write

log = logging.getLogger(__name__)

KINDS = ("text", "image")
SERVED_MAX = 512  # per kind: enough for recall to +-0.01, small to write (384 KiB at 384-d)
FLUSH_EVERY = 32  # new served queries, or ...
FLUSH_SECONDS = 60.0  # ... this long since the last flush, whichever comes first
SEED_VERSION = 1  # bump when the seed texts change: the seed is written again
SEED_CLASS_NAMES = 1000


def folder_for(index_folder: Path) -> Path:
    """``<data_dir>/query-sample-<model slug>-<hash>`` beside ``index-<model slug>-<hash>``."""
    return index_folder.parent / index_folder.name.replace("index-", "query-sample-", 1)


def seed_texts() -> list[str]:
    """Texts shaped like what people type: class names, short sentences and captions."""
    from search.relevance import reference_texts
    from search.samples import sample_captions

    names = reference_texts()[:SEED_CLASS_NAMES]
    # Every third name as a sentence: queries are both bare nouns and descriptions.
    texts = [f"a photo of a {n}" if i % 3 == 2 else n for i, n in enumerate(names)]
    return texts + sample_captions()


def worth_seeding(requested: str, count: int, dim: int) -> bool:
    """Whether a library of ``count`` vectors will soon get an approximate index (it may
    double first), so the model's text queries are worth encoding for its tuning."""
    from search.vectors import kinds

    return kinds.choose(requested, 2 * count, dim) in kinds.APPROXIMATE


def split(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tuning half, held-out half) of a query set: even and odd rows."""
    return vectors[0::2], vectors[1::2]


class QuerySample:
    """One model's seed and served queries. Thread-safe: a server records from many threads."""

    def __init__(self, index_folder: Path, model_id: str) -> None:
        self.folder = folder_for(Path(index_folder))
        self.model_id = model_id
        self._lock = threading.Lock()
        self._pending: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
        self._last_flush = time.monotonic()
        self._rng = np.random.default_rng()

    # -- reading ----------------------------------------------------------------------------

    def _load(self, name: str) -> dict[str, np.ndarray]:
        try:
            with np.load(self.folder / name, allow_pickle=False) as data:
                if str(data["model"]) != self.model_id:
                    return {}
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, KeyError):
            return {}

    def seed(self) -> np.ndarray | None:
        """The seed text queries, or None if they were never written (or are outdated)."""
        data = self._load("seed.npz")
        if not data or int(data.get("version", 0)) != SEED_VERSION:
            return None
        return data["text"].astype(np.float32)

    def served(self) -> dict[str, np.ndarray]:
        """The served queries per kind (float32; empty arrays where none were kept)."""
        data = self._load("served.npz")
        return {k: data[k].astype(np.float32) for k in KINDS if k in data and len(data[k])}

    def sets(self) -> dict[str, np.ndarray]:
        """Every stored query by kind: text is the seed plus served text queries."""
        served = self.served()
        text = [v for v in (self.seed(), served.get("text")) if v is not None and len(v)]
        out = {}
        if text:
            out["text"] = np.concatenate(text)
        if "image" in served:
            out["image"] = served["image"]
        return out

    def served_counts(self) -> dict[str, int]:
        data = self._load("served.npz")
        return {k: int(data.get(f"seen_{k}", 0)) for k in KINDS} if data else {}

    # -- writing ----------------------------------------------------------------------------

    def write_seed(self, vectors: np.ndarray) -> bool:
        """Store the seed text queries (False when the data dir cannot be written)."""
        return self._write("seed.npz", {
            "text": np.asarray(vectors, np.float16), "version": np.int64(SEED_VERSION),
        })

    def ensure_seed(self, encode_texts) -> bool:
        """Encode and store the seed with ``encode_texts`` unless it is already there.
        True when a seed exists afterwards."""
        if self.seed() is not None:
            return True
        vectors = encode_texts(seed_texts())
        return self.write_seed(vectors)

    def record(self, kind: str, vector: np.ndarray) -> None:
        """Remember a served query vector; written to disk every FLUSH_EVERY queries or
        FLUSH_SECONDS, whichever comes first."""
        if kind not in KINDS:
            return
        with self._lock:
            self._pending[kind].append(np.asarray(vector, np.float32).ravel())
            due = (sum(len(v) for v in self._pending.values()) >= FLUSH_EVERY
                   or time.monotonic() - self._last_flush >= FLUSH_SECONDS)
        if due:
            self.flush()

    def flush(self) -> None:
        """Fold the pending queries into the stored reservoir (at most SERVED_MAX a kind)."""
        with self._lock:
            pending, self._pending = self._pending, {k: [] for k in KINDS}
            self._last_flush = time.monotonic()
            if not any(pending.values()):
                return
            data = self._load("served.npz")
            out: dict[str, np.ndarray] = {}
            for kind in KINDS:
                kept = data.get(kind, np.zeros((0, 0), np.float16))
                seen = int(data.get(f"seen_{kind}", 0))
                kept, seen = self._reservoir(kept, seen, pending[kind])
                out[kind], out[f"seen_{kind}"] = kept, np.int64(seen)
            self._write("served.npz", out)

    def _reservoir(
        self, kept: np.ndarray, seen: int, new: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, int]:
        """Algorithm R: every query served so far is kept with the same chance."""
        rows = list(kept) if kept.size else []
        if rows and new and len(rows[0]) != len(new[0]):
            rows, seen = [], 0  # another dimension: the model changed under this name
        for vector in new:
            seen += 1
            if len(rows) < SERVED_MAX:
                rows.append(vector)
            else:
                j = int(self._rng.integers(seen))
                if j < SERVED_MAX:
                    rows[j] = vector
        arr = np.asarray(rows, np.float16) if rows else np.zeros((0, 0), np.float16)
        return arr, seen

    def _write(self, name: str, arrays: dict[str, np.ndarray]) -> bool:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.folder / name) as fh:
                np.savez(fh, model=np.str_(self.model_id), **arrays)
        except OSError as exc:  # a read-only library only loses the sample
            log.debug("cannot write the query sample %s: %s", self.folder / name, exc)
            return False
        return True
