"""The query engine: text or image in, ranked indexed files out.

The model loads on first use, so a status call never pays for it. Results come from the
vector index (a cache of the store) joined with the store: contents whose files are all gone
are skipped, and a content stored under several paths is one result listing them all.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search import duplicates, library, ocr, relevance
from search.config import Config
from search.encoders import Encoder, canonical_model_id, load_encoder, pick_device
from search.errors import ConfigError, InputError
from search.limits import MAX_ID, check_k
from search.preprocess import BadImage, decode
from search.query import SearchRequest, Term, build
from search.results import Result
from search.store import Filter, Photo, Store
from search.tags import check_known as check_tags
from search.vectors import VectorIndex, index_for, snapshot
from search.vectors.queries import QuerySample

# Date orders rank the strong matches among this many nearest photos by date.
SORT_POOL = 1000
# Library photos sampled as the reference for image queries' relevance cut.
IMAGE_REFERENCE_SIZE = 1000
MIN_IMAGE_REFERENCE = 8
# A filter is checked on the nearest photos first (at least POSTFILTER_MIN of them); past
# POSTFILTER_MAX candidates, the index searches the filter's own ids instead.
POSTFILTER_MIN, POSTFILTER_MAX = 256, 4096
# Photos whose text (OCR) matches a query's words, fused with the CLIP ranking by
# reciprocal rank fusion: each list adds 1 / (RRF_K + rank). 60 is the constant of the
# method's paper (Cormack et al. 2009).
TEXT_POOL = 200
RRF_K = 60


def text_led(terms: list[Term]) -> bool:
    """Whether text carries most of the query's positive weight (which reference judges it)."""
    text = sum(t.weight for t in terms if t.weight > 0 and t.kind == "text")
    other = sum(t.weight for t in terms if t.weight > 0 and t.kind != "text")
    return text >= other


@dataclass
class Page:
    """One page of results, and where the next one starts (None: this is the last)."""

    results: list[Result]
    offset: int = 0
    next_offset: int | None = None

    @property
    def strong(self) -> int:
        return sum(r.strong for r in self.results)


class Engine:
    def __init__(self, config: Config, encoder: Encoder | None = None) -> None:
        self.store = Store(config.db_url)
        self.config = config = library.adopt_model(config, self.store)  # unless one is chosen
        self._encoder = encoder
        self._vectors: VectorIndex | None = None
        self._text_reference: relevance.Reference | None = None
        self._image_reference: tuple[int, relevance.Reference] | None = None
        self.model_id = encoder.model_id if encoder else canonical_model_id(config.model.name)
        self._queries: QuerySample | None = None

    @property
    def query_sample(self) -> QuerySample:
        """The sample of served queries the vector index tunes its search depth on."""
        if self._queries is None or self._queries.model_id != self.model_id:
            folder = snapshot.folder_for(self.config.data_path, self.model_id)
            self._queries = QuerySample(folder, self.model_id)
        return self._queries

    @property
    def model_loaded(self) -> bool:
        """Whether the model is in memory (else the first encode loads it: seconds)."""
        return self._encoder is not None

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from search.encoders.int8_calibration import library_photos

            self._encoder = load_encoder(
                self.config.model, cache_dir=self.config.data_path,
                calibration_photos=lambda: library_photos(self.config))
            self.model_id = self._encoder.model_id
        return self._encoder

    @property
    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            # A reader: it trusts the snapshot's count (the indexer verifies it).
            self._vectors = index_for(self.store, self.model_id, self.config, verify=False).open()
        return self._vectors

    def refresh(self) -> bool:
        """Pick up what another process indexed or removed since the index was opened:
        reads only the change, and costs two index seeks when there is none."""
        if self._vectors is None:
            return False
        return self._vectors.refresh()

    # -- queries ------------------------------------------------------------------------

    def check_query(self, text: str) -> str:
        text = (text or "").strip()
        if not text:
            raise InputError("the query is empty: type what the photos show, e.g. 'dog on a beach'")
        limit = self.config.search.max_query_chars
        if len(text) > limit:
            raise InputError(
                f"the query is {len(text)} characters; the limit is {limit} "
                "(search.max_query_chars)"
            )
        return text

    def encode_query_image(self, image: str | Path | bytes) -> np.ndarray:
        """A query image as a vector: a file path, or the bytes of an uploaded image."""
        if isinstance(image, bytes):
            data, what = image, "the uploaded image"
        else:
            try:
                data = Path(image).expanduser().read_bytes()
            except (OSError, ValueError, RuntimeError) as exc:  # also a NUL byte, "~nobody"
                reason = getattr(exc, "strerror", None) or exc
                raise InputError(f"cannot read the query image {image}: {reason}") from None
            what = f"the query image {image}"
        try:
            decoded = decode(
                data, self.encoder.spec, max_pixels=self.config.indexer.max_image_pixels,
                draft=False, uint8=True,
            )
        except BadImage as exc:
            raise InputError(f"{what} is not usable: {exc}") from None
        return self.encoder.encode_pixels(decoded.pixels[None])[0]

    def search(self, request: SearchRequest) -> Page:
        """Everything a search can ask (``search.query.build`` makes the request): weighted
        text, example images and library photos, negatives, filters, paging, a score floor
        and an order. Each result says whether it is a strong match (search.relevance)."""
        k = check_k(request.k) or self.config.search.default_k
        if self.vectors.count == 0:  # a model this library was not indexed with: say so
            library.check_has_vectors(self.store, self.model_id)
        check_tags(self.store, (*request.where.tags, *request.where.not_tags))
        self.check_folders(request.where.folders)
        if request.in_text is not None and not any(t.weight > 0 for t in request.terms):
            return self._search_in_text(request, k)
        if request.where.tags and not any(t.weight > 0 for t in request.terms):
            return self._search_in_tag(request, k)
        query, sources = self._query_vector(request.terms)
        self.query_sample.record("text" if text_led(request.terms) else "image", query)
        want = request.offset + k + 1  # one more tells whether a next page exists
        if request.collapse:  # near-duplicates fold away: look further (search.duplicates)
            want += duplicates.lookahead(want)
        pool = max(want, SORT_POOL) if request.sort != "relevance" else want
        found = [
            hit for hit in self._nearest(query, pool + len(sources), request.exact,
                                         where=request.where)
            if hit[0] not in sources  # "similar to X" does not answer X itself
        ][:pool]
        # The words of the query (and of --text) also look for photos that show them.
        said = " ".join(str(t.value) for t in request.terms if t.kind == "text" and t.weight > 0)
        words = ocr.query_words(f"{said} {request.in_text or ''}")
        hits = self._text_hits(words, request.where, sources)
        if hits:
            found = self._fuse(query, found, hits)[:pool]
        if request.min_score is not None:
            found = [hit for hit in found if hit[1] >= request.min_score]
        strong = self._strong(query, [cid for cid, _, _ in found], text_led(request.terms))
        ranked = []
        for (cid, score, photo), ok in zip(found, strong, strict=True):
            matched = (["image"] if ok else []) + (["text"] if cid in hits else [])
            result = Result.of(cid, score, photo, bool(ok) or cid in hits)
            result.matched = matched
            ranked.append(result)
        return self._page(ranked, request, k, words)

    def check_folders(self, folders: tuple[str, ...]) -> None:
        """A folder filter that can match nothing is a mistake (a typo, a folder never
        indexed): say so, naming it, rather than answer an empty page."""
        for folder in folders:
            if not self.store.has_photos_under(folder, self.model_id):
                raise InputError(f"folder: no indexed photos are under {folder}")

    def _page(self, ranked: list[Result], request: SearchRequest, k: int,
              words: list[str]) -> Page:
        """Order (date orders among the strong matches), cut one page, add text snippets."""
        if request.sort != "relevance":
            # Date order among the strong matches; the weak ones follow by relevance.
            newest = request.sort == "newest"
            dated = sorted((r for r in ranked if r.strong),
                           key=lambda r: (r.date or dt.datetime.min), reverse=newest)
            ranked = dated + [r for r in ranked if not r.strong]
        end = request.offset + k
        more = len(ranked) > end
        if request.collapse:  # one result per group of near-duplicates (search.duplicates)
            ranked, more = duplicates.collapse(ranked, self.store, self.model_id, end)
        page = ranked[request.offset:end]
        texts = self.store.texts(r.content_id for r in page) if page else {}
        for r in page:
            if r.content_id in texts:
                r.text = ocr.snippet(texts[r.content_id], words)
        return Page(page, request.offset, end if more else None)

    def _text_hits(self, words: list[str], where: Filter, exclude: set[int]) -> dict[int, int]:
        """{content id: rank} of photos whose text holds the words, passing ``where``."""
        if not words:
            return {}
        hits = [cid for cid, _ in self.store.text_search(words, TEXT_POOL) if cid not in exclude]
        if hits and where:
            passing = set(self.store.filtered_contents(self.model_id, where, among=hits).tolist())
            hits = [cid for cid in hits if cid in passing]
        return {cid: rank for rank, cid in enumerate(hits)}

    def _fuse(
        self, query: np.ndarray, found: list[tuple[int, float, Photo]], hits: dict[int, int]
    ) -> list[tuple[int, float, Photo]]:
        """The CLIP ranking and the text ranking as one (reciprocal rank fusion). A text
        hit CLIP did not rank is placed in CLIP's order by its own cosine first."""
        have = {cid for cid, _, _ in found}
        missing = [cid for cid in hits if cid not in have]
        if missing:
            photos = self.store.photos(missing)
            vectors = self.store.vectors(self.model_id, [c for c in missing if c in photos])
            found = found + [(cid, float(vectors[cid] @ query), photos[cid])
                             for cid in missing if cid in vectors]
            found.sort(key=lambda hit: -hit[1])
        fused = {cid: 1 / (RRF_K + rank) for rank, (cid, _, _) in enumerate(found)}
        for cid, rank in hits.items():
            if cid in fused:
                fused[cid] += 1 / (RRF_K + rank)
        return sorted(found, key=lambda hit: -fused[hit[0]])

    def _search_in_text(self, request: SearchRequest, k: int) -> Page:
        """``--text`` alone: photos whose text holds the words, best first; the score is
        the text relevance (SQLite: bm25; PostgreSQL: ts_rank), not a cosine."""
        words = ocr.query_words(request.in_text or "")
        if not words:
            raise InputError("text: give a word to look for in the photos, e.g. 'receipt'")
        want = request.offset + k + 1
        if request.collapse:
            want += duplicates.lookahead(want)
        pool = max(want, SORT_POOL) if request.sort != "relevance" else want
        hits = self.store.text_search(words, max(pool, TEXT_POOL))
        if request.where:
            passing = set(self.store.filtered_contents(
                self.model_id, request.where, among=[cid for cid, _ in hits]).tolist())
            hits = [(cid, s) for cid, s in hits if cid in passing]
        photos = self.store.photos(cid for cid, _ in hits)
        ranked = []
        for cid, score in hits:
            if cid in photos:
                result = Result.of(cid, score, photos[cid], True)
                result.matched = ["text"]
                ranked.append(result)
        return self._page(ranked[:pool], request, k, words)

    def _search_in_tag(self, request: SearchRequest, k: int) -> Page:
        """``--tag`` alone: the tag's members that pass the filter, surest first; the
        score is the tag's (0.5 to 1), not a cosine."""
        want = request.offset + k + 1
        if request.collapse:
            want += duplicates.lookahead(want)
        pool = max(want, SORT_POOL) if request.sort != "relevance" else want
        members = self.store.tag_members(self.store.tag(request.where.tags[0]).id)
        ranked: list[Result] = []
        for start in range(0, len(members), 2000):  # the filter, a chunk at a time
            part = members[start:start + 2000]
            passing = set(self.store.filtered_contents(
                self.model_id, request.where, among=[cid for cid, _ in part]).tolist())
            photos = self.store.photos(cid for cid, _ in part if cid in passing)
            ranked += [Result.of(cid, score, photos[cid]) for cid, score in part
                       if cid in photos]
            if len(ranked) >= pool:
                break
        return self._page(ranked[:pool], request, k, [])

    def _query_vector(self, terms: list[Term]) -> tuple[np.ndarray, set[int]]:
        """The weighted sum of the terms' unit vectors, normalised, and the library
        photos it was made from."""
        texts = [t for t in terms if t.kind == "text"]
        parts: list[tuple[float, np.ndarray]] = []
        if texts:
            vecs = self.encoder.encode_texts([self.check_query(str(t.value)) for t in texts])
            parts += [(t.weight, v) for t, v in zip(texts, vecs, strict=True)]
        sources: set[int] = set()
        for term in terms:
            if term.kind == "image":
                parts.append((term.weight, self.encode_query_image(term.value)))
            elif term.kind == "similar":
                cid, vector = self._library_photo(term.value)
                sources.add(cid)
                parts.append((term.weight, vector))
        total = sum(w * v.astype(np.float64) for w, v in parts)
        norm = float(np.linalg.norm(total))
        # Relative: the same text encoded twice in one batch differs by float noise.
        if norm < 1e-3 * sum(abs(w) for w, _ in parts):
            raise InputError("the query's terms cancel each other out: change a weight")
        return (total / norm).astype(np.float32), sources

    def _library_photo(self, ref: str | int | bytes) -> tuple[int, np.ndarray]:
        """A content id from an id or the path of an indexed file, and its vector."""
        cid: int | None = None
        if isinstance(ref, int):
            cid = ref if 0 <= ref <= MAX_ID else None
        else:
            try:
                cid = self.store.content_for_path(str(Path(str(ref)).expanduser().resolve()))
            except (OSError, ValueError, RuntimeError):  # a NUL byte, too long, "~nobody"
                cid = None
        vector = self.store.vectors(self.model_id, [cid]).get(cid) if cid is not None else None
        if vector is None:
            raise InputError(
                f"similar: {ref} is not a photo in the library indexed with {self.model_id} "
                "(give an id from a search result, or the path of an indexed photo; "
                "for any other image, search by example)"
            )
        return cid, vector

    def _strong(self, query: np.ndarray, cids: list[int], text_led: bool) -> np.ndarray:
        if not cids:
            return np.zeros(0, dtype=bool)
        stored = self.store.vectors(self.model_id, cids)
        vectors = np.stack([stored[cid] for cid in cids])
        ref = self.text_reference() if text_led else self.image_reference()
        if ref is None:
            return np.ones(len(cids), dtype=bool)
        return ref.z_scores(query, vectors) >= relevance.STRONG_Z

    def text_reference(self) -> relevance.Reference:
        if self._text_reference is None:
            from search.files import cache_dir

            self._text_reference = relevance.text_reference(self.encoder, cache_dir())
        return self._text_reference

    def image_reference(self) -> relevance.Reference | None:
        """A sample of the library's own vectors (remade when the library doubles)."""
        count = self.vectors.count
        if count < 2:
            return None
        if self._image_reference is None or count > 2 * self._image_reference[0]:
            sample = self.store.sample_vectors(self.model_id, IMAGE_REFERENCE_SIZE)
            if len(sample) < MIN_IMAGE_REFERENCE:
                return None  # too few photos to tell a strong match from the rest
            self._image_reference = (count, relevance.Reference.of(sample))
        return self._image_reference[1]

    def _nearest(
        self, query: np.ndarray, n: int, exact: bool, *, ids: np.ndarray | None = None,
        where: Filter | None = None,
    ) -> list[tuple[int, float, Photo]]:
        """Up to n live photos nearest ``query``, best first, among ``ids`` if given and
        passing ``where`` if given.

        A filter is first applied to the nearest photos (checking a few hundred ids costs
        milliseconds); most filters leave enough of them. Only when the nearest
        POSTFILTER_MAX do not hold n matches are the filter's ids listed and searched
        alone (the index restricts the search to them, so a narrow filter still gets n).
        """
        index = self.vectors
        fetch = max(n, POSTFILTER_MIN) if where else n
        while True:
            if where and (fetch > POSTFILTER_MAX or fetch > 4 * index.count):
                ids = self.store.filtered_contents(self.model_id, where)
                if not len(ids):
                    return []
                return self._nearest(query, n, exact, ids=ids)
            scores, found = index.search(query, fetch, ids=ids, exact=exact)
            pairs = [
                (int(i), float(s)) for i, s in zip(found[0], scores[0], strict=False) if i >= 0
            ]
            if where:
                passing = set(self.store.filtered_contents(
                    self.model_id, where, among=[cid for cid, _ in pairs]).tolist())
                candidates = [(cid, s) for cid, s in pairs if cid in passing]
            else:
                candidates = pairs
            photos = self.store.photos(cid for cid, _ in candidates[:n])
            live = [(cid, s) for cid, s in candidates if cid in photos]
            # Contents whose files all went are collected with their vectors at the end of
            # an indexing run; one caught in between is skipped here.
            if len(live) >= n or (fetch >= index.count and not where):
                break
            fetch *= 4
        return [(cid, s, photos[cid]) for cid, s in live[:n]]

    def search_text(self, text: str, k: int | None = None, exact: bool = False) -> list[Result]:
        """The k photos nearest a text: ``search`` with that text alone, every result shown
        (no folding of near-duplicates)."""
        request = build(self.check_query(text), k=k, exact=exact, collapse=False)
        return self.search(request).results

    def search_image(
        self, image: str | Path | bytes, k: int | None = None, exact: bool = False
    ) -> list[Result]:
        """Search by example: an image file's path, or its bytes (an upload)."""
        request = build(images=[(1.0, image)], k=k, exact=exact, collapse=False)
        return self.search(request).results

    def search_vector(
        self,
        query: np.ndarray,
        k: int | None = None,
        *,
        ids: np.ndarray | None = None,
        exact: bool = False,
    ) -> list[Result]:
        """The k stored photos nearest ``query``; ``ids`` limits them to those content ids,
        ``exact`` bypasses the approximate index (to check its recall). No relevance cut:
        every result counts as strong."""
        k = k or self.config.search.default_k
        if k <= 0:
            raise InputError("k must be a positive number of results")
        return [Result.of(cid, s, photo)
                for cid, s, photo in self._nearest(query, k, exact, ids=ids)]

    def classify(
        self, image: str | Path, labels: list[str], templates: list[str] | None = None,
        temperature: float | None = None,
    ) -> list[tuple[str, float]]:
        """Zero-shot: softmax over cosine(image, label) / temperature, the temperature
        calibrated for this model (search.calibration) unless given. With ``templates``
        (see ``search.prompts``), each label is its prompt ensemble."""
        from search import calibration
        from search.prompts import label_embeddings

        if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
            raise InputError(f"temperature must be above 0, not {temperature}")
        labels = [self.check_query(label) for label in labels]
        if not labels:
            raise InputError("give at least one label to classify against")
        image_vec = self.encode_query_image(image)
        text_vecs = label_embeddings(self.encoder, labels, templates)
        scale = 1.0 / temperature if temperature else calibration.logit_scale(self.encoder)
        probs = calibration.probabilities(image_vec, text_vecs, scale)[0]
        return sorted(zip(labels, probs.tolist(), strict=False), key=lambda p: -p[1])

    # -- status ---------------------------------------------------------------------------

    def status(self, max_failures: int = 100) -> dict:
        counts = self.store.library_counts(max_failures)
        files, failed, per_model = counts["files"], counts["failed"], counts["models"]
        current = per_model.get(self.model_id, {"vectors": 0, "files_indexed": 0})
        index = index_for(self.store, self.model_id, self.config)
        for model, info in per_model.items():
            info["current_model"] = model == self.model_id
        return {
            "model": self.model_id,
            "files": files,
            "indexed": current["files_indexed"],
            "failed": failed or 0,
            "pending": files - (failed or 0) - current["files_indexed"],
            "index_current": index.is_current(),
            "index": index.describe(),
            "failures": counts["failures"],
            "models": per_model,
            "database": self.store.engine.url.render_as_string(hide_password=True),
            "data_dir": str(self.config.data_path),
            "precision": self.precision(),
            "runtime": self.runtime(),
            "ocr": self.ocr_status(),
        }

    def ocr_status(self) -> dict:
        """Whether text in photos is read, by what, and how far it got."""
        cfg = self.config.ocr
        engine = ocr.engine_id()
        counts = self.store.text_counts().get(engine, {})
        return {
            "enabled": cfg.active(),
            "setting": cfg.enabled,
            "installed": ocr.available(),
            "engine": engine if ocr.available() else None,
            "read": counts.get("ok", 0),
            "failed": counts.get("failed", 0),
        }

    def precision(self) -> dict:
        """The precision the model runs at, without loading it: the loaded encoder's, else
        the setting, else (``auto``) the choice cached for this model, device and CPU."""
        from search.encoders.names import OFFLINE_MODEL_ID
        from search.encoders.precision import cached_choice

        setting = self.config.model.precision
        if self.model_id == OFFLINE_MODEL_ID:  # loaded or not: the same words
            return {"setting": setting, "in_use": "fp32", "reason": "the offline model: fp32"}
        if self._encoder is not None:
            enc = self._encoder
            return {"setting": setting, "in_use": enc.precision, "reason": enc.precision_reason}
        if setting != "auto":
            return {"setting": setting, "in_use": setting, "reason": "asked for"}
        pair = self.runtime()
        if self.config.model.runtime != "torch" and (
                pair["precision"] is not None or pair["in_use"] is None):
            # runtime auto chose (or will choose) the pair: its precision and reason
            return {"setting": setting, "in_use": pair["precision"], "reason": pair["reason"]}
        try:
            device = pick_device(self.config.model.device)
        except ConfigError as exc:
            return {"setting": setting, "in_use": None, "reason": str(exc)}
        hit = cached_choice(self.config.data_path, self.model_id, device)
        if hit is None:
            return {
                "setting": setting,
                "in_use": None,
                "reason": f"not measured yet on this machine ({device}): measured the first "
                "time the model is used",
            }
        return {"setting": setting, "in_use": hit["precision"], "reason": hit.get("reason", "")}

    def runtime(self) -> dict:
        """The runtime the model runs on (``search.encoders.runtimes``), without loading it:
        the loaded encoder's, else the setting, else the pair auto chose for this machine."""
        from search.encoders.runtime_choice import describe, installed

        setting = self.config.model.runtime
        if self._encoder is not None:
            enc = self._encoder
            return {"setting": setting, "in_use": getattr(enc, "runtime", "torch"),
                    "precision": enc.precision,
                    "reason": getattr(enc, "runtime_reason", "the offline model runs on torch"),
                    "installed": installed()}
        return describe(self.config.model, self.model_id, self.config.data_path)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._queries is not None:
            self._queries.flush()
        self.store.close()
