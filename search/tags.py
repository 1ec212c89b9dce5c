"""Tags taught by example: a classifier per tag on the library's stored vectors.

A tag is any mix of positive photos, negative photos and text prompts. Its classifier is
linear on the CLIP vectors (no re-encode):

- a **prior** direction, Tip-Adapter / LP++ style: the prototype of the positives minus that
  of the negatives (or of the library, when there are none), plus the encoded prompts'
  direction, which counts less as examples accumulate;
- a **linear probe** (logistic regression, L-BFGS) on the examples, pulled towards the prior
  so that five examples cannot drag it anywhere; it runs once there are at least
  ``MIN_PROBE`` positives (the library stands in for missing negatives, at low weight);
- a **threshold** from leave-one-out scores of the examples (the cut that best separates
  them); within the range of equally good cuts it takes the emptiest part of the library's
  score distribution.

A tag with **prompts only** uses the zero-shot temperature calibrated for the model
(``search.calibration``, the one ``classify`` uses): its probability for a photo is the
softmax, at the calibrated logit scale, of the photo's cosine with the tag's prompts against
``CONTRAST_PROMPTS`` (generic captions; with them the choice has the 5 options the scale was
calibrated on). Each side's softmax mass is taken at its mean cosine (Jensen's bound), so the
classifier stays linear: ``logit = scale x (mean prompt - mean contrast) . x + log(M / K)``
for M prompts and K contrasts. A lower temperature (higher scale) makes photos that lean
towards the prompts members more readily. Without a scale (no encoder at hand), such a tag
is cut by Otsu's method on the library's scores.

A photo's score is ``sigmoid(logit - threshold)``: 0.5 or more makes it a member. Applying
tags is one matrix product per chunk of stored vectors (``apply``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.errors import InputError

MIN_PROBE = 2  # positives needed before the probe runs
LIBRARY_SAMPLE = 2000  # library vectors that stand for its distribution
PROBE_PULL = 0.05  # how strongly the probe is held to its prior (per unit of example weight)
LOO_MAX = 40  # past this many examples, 10 folds instead of leave-one-out
# What a prompt-only tag's prompts compete with: captions that fit any photo. Four of them,
# so that one prompt against them is the 5-way choice the logit scale is calibrated on.
CONTRAST_PROMPTS = ("a photo", "a picture", "an image", "a snapshot")
MAX_NAME = 128


@dataclass
class Classifier:
    weights: np.ndarray  # (d,) float32, applied to the stored (unit) vectors
    bias: float
    threshold: float

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(vectors, dtype=np.float32) @ self.weights + np.float32(self.bias)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logits(vectors) - self.threshold)


def check_name(name: str) -> str:
    """A tag name as stored: trimmed, one line, at most MAX_NAME characters."""
    name = (name or "").strip()
    if not name:
        raise InputError("a tag needs a name, e.g. `pixseek tag receipts --add photo.jpg`")
    if len(name) > MAX_NAME or any(c in name for c in "\n\r\t\x00/"):
        raise InputError(f"tag name {name[:40]!r}: at most {MAX_NAME} characters, "
                         "without '/', tabs or line breaks")
    return name


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _rows(x: np.ndarray | None, d: int) -> np.ndarray:
    if x is None or len(x) == 0:
        return np.zeros((0, d), dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit(positives: np.ndarray | None, negatives: np.ndarray | None = None,
        prompts: np.ndarray | None = None, library: np.ndarray | None = None,
        scale: float | None = None, contrasts: np.ndarray | None = None) -> Classifier:
    """The classifier for these examples and encoded prompts, calibrated on ``library`` (a
    sample of the library's vectors). A tag with prompts only is scored at the logit
    ``scale`` against the encoded ``contrasts`` when both are given (``prompt_classifier``)."""
    d = next(len(x[0]) for x in (positives, negatives, prompts, library)
             if x is not None and len(x))
    pos, neg, txt, lib = (_rows(x, d) for x in (positives, negatives, prompts, library))
    if not len(pos) and not len(txt):
        raise InputError("a tag needs at least one positive example or a text prompt")
    if not len(pos) and scale is not None and contrasts is not None and len(contrasts):
        return prompt_classifier(txt, _rows(contrasts, d), scale)
    w, b = _fit_logits(pos, neg, txt, lib)
    lib_logits = lib @ w + b if len(lib) else np.zeros(0)
    if not len(pos):
        threshold = _otsu(lib_logits) if len(lib_logits) > 1 else 0.0
    else:
        loo_pos, loo_neg = _held_out_logits(pos, neg, txt, lib)
        if not len(neg):  # the library stands for the negatives: most photos are not in a tag
            loo_neg = lib_logits
        threshold = _cut(loo_pos, loo_neg, lib_logits)
    return Classifier(w.astype(np.float32), float(b), float(threshold))


def prompt_classifier(prompts: np.ndarray, contrasts: np.ndarray,
                      scale: float) -> Classifier:
    """Prompts alone: ``P(one of the prompts | photo)`` among prompts and contrasts, a softmax
    of ``scale x cosine``, each side's mass taken at its mean cosine so that it stays linear.
    Member when the probability is at least 0.5."""
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"the logit scale must be above 0, not {scale}")
    prompts, contrasts = _rows(prompts, prompts.shape[1]), _rows(contrasts, prompts.shape[1])
    weights = float(scale) * (prompts.mean(0) - contrasts.mean(0))
    return Classifier(weights.astype(np.float32), float(np.log(len(prompts) / len(contrasts))),
                      0.0)


def _fit_logits(pos: np.ndarray, neg: np.ndarray, txt: np.ndarray,
                lib: np.ndarray) -> tuple[np.ndarray, float]:
    """(weights, bias) of the logit on raw vectors."""
    centre = lib.mean(0) if len(lib) else np.concatenate([pos, neg, txt]).mean(0)
    zp, zn = pos - centre, neg - centre
    direction = np.zeros(pos.shape[1] if len(pos) else txt.shape[1])
    if len(pos):
        direction += _unit(zp.mean(0) - (zn.mean(0) if len(zn) else 0.0))
    if len(txt):  # text guides while examples are few
        direction += 4.0 / (4.0 + len(pos)) * _unit(_unit(txt.mean(0)) - _unit(centre) *
                                                     float(_unit(txt.mean(0)) @ _unit(centre)))
    direction = _unit(direction)
    zl = lib - centre
    if len(pos):
        low = (zn @ direction).mean() if len(zn) else (zl @ direction).mean() if len(zl) else 0.0
        high = (zp @ direction).mean()
        scale = 4.0 / max(float(high - low), 1e-3)
        bias = -scale * (high + low) / 2
    else:
        proj = zl @ direction if len(zl) else np.zeros(1)
        scale = 1.0 / max(float(proj.std()), 1e-3)
        bias = -scale * float(proj.mean())
    w0 = scale * direction
    if len(pos) >= MIN_PROBE and (len(neg) or len(zl)):
        w0, bias = _probe(zp, zn if len(zn) else zl, w0, bias, background=not len(zn))
    return w0, float(bias - centre @ w0)


def _probe(zp: np.ndarray, zn: np.ndarray, w0: np.ndarray, b0: float,
           background: bool) -> tuple[np.ndarray, float]:
    """Weighted logistic regression, each class half the weight (the library as background
    negatives: a quarter), held to the prior ``w0`` by an L2 pull."""
    from scipy.optimize import minimize

    x = np.concatenate([zp, zn])
    y = np.concatenate([np.ones(len(zp)), -np.ones(len(zn))])
    sw = np.concatenate([np.full(len(zp), 0.5 / len(zp)),
                         np.full(len(zn), (0.25 if background else 0.5) / len(zn))])
    d = len(w0)
    pull = PROBE_PULL / max(float(w0 @ w0), 1e-12)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:d], params[d]
        margin = y * (x @ w + b)
        diff = w - w0
        value = float(sw @ np.logaddexp(0.0, -margin)) + 0.5 * pull * float(diff @ diff)
        g = -y * sw * _sigmoid(-margin)
        return value, np.concatenate([x.T @ g + pull * diff, [g.sum()]])

    found = minimize(loss, np.concatenate([w0, [b0]]), jac=True, method="L-BFGS-B",
                     options={"maxiter": 200})
    return found.x[:d], float(found.x[d])


def _held_out_logits(pos: np.ndarray, neg: np.ndarray, txt: np.ndarray,
                     lib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each example's logit from a classifier fitted without it (leave-one-out; 10 folds
    past LOO_MAX examples). An example alone on its side keeps its full-fit logit."""
    n = len(pos) + len(neg)
    every = np.concatenate([pos, neg])
    side = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    folds = np.arange(n) if n <= LOO_MAX else np.random.default_rng(0).permutation(n) % 10
    out = np.empty(n)
    for fold in np.unique(folds):
        out_i = folds == fold
        keep_p, keep_n = every[~out_i & side], every[~out_i & ~side]
        if not len(keep_p) and not len(txt):
            keep_p = pos  # nothing left to learn from: the honest estimate is unavailable
        w, b = _fit_logits(keep_p, keep_n, txt, lib)
        out[out_i] = every[out_i] @ w + b
    return out[side], out[~side]


def _cut(pos: np.ndarray, neg: np.ndarray, library: np.ndarray) -> float:
    """The logit cut with the best balanced accuracy on these scores; among equally good
    cuts, the one in the emptiest part of the library's distribution."""
    values = np.unique(np.concatenate([pos, neg]))
    if len(values) < 2:
        return float(values[0] - 1e-6) if len(values) else 0.0
    cands = np.concatenate([[values[0] - 1.0], (values[1:] + values[:-1]) / 2, [values[-1] + 1]])
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    tp = len(pos_s) - np.searchsorted(pos_s, cands)
    tn = np.searchsorted(neg_s, cands)
    accuracy = (tp / max(len(pos_s), 1) if len(pos_s) else 0) + \
        (tn / max(len(neg_s), 1) if len(neg_s) else 0)
    best = np.flatnonzero(accuracy >= accuracy.max() - 1e-9)
    lo = values[max(best[0] - 1, 0)] if best[0] > 0 else cands[best[0]]
    hi = values[min(best[-1], len(values) - 1)]
    if hi <= lo:
        return float(cands[best[len(best) // 2]])
    grid = np.linspace(lo, hi, 33)[1:-1]
    if not len(library):
        return float((lo + hi) / 2)
    width = (hi - lo) / 8
    crowd = np.array([np.count_nonzero(np.abs(library - g) < width) for g in grid])
    quiet = np.flatnonzero(crowd == crowd.min())
    middle = quiet[np.argmin(np.abs(grid[quiet] - (lo + hi) / 2))]
    return float(grid[middle])


def _otsu(values: np.ndarray, bins: int = 64) -> float:
    """The cut that splits values into two groups of least within-group variance."""
    hist, edges = np.histogram(values, bins=bins)
    mids = (edges[1:] + edges[:-1]) / 2
    p = hist / hist.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * mids)
    between = (mu[-1] * w - mu) ** 2 / np.maximum(w * (1 - w), 1e-12)
    return float(edges[1:][np.argmax(between[:-1])])


def apply(classifiers: list[Classifier],
          chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray,
                                                                               np.ndarray]]:
    """Score (ids, vectors) chunks against every classifier at once: one matrix product per
    chunk. Yields (ids, scores of shape (n, tags))."""
    if not classifiers:
        return
    weights = np.stack([c.weights for c in classifiers], axis=1).astype(np.float32)
    offset = np.array([c.bias - c.threshold for c in classifiers], dtype=np.float32)
    for ids, vectors in chunks:
        logits = np.asarray(vectors, dtype=np.float32) @ weights + offset
        yield ids, _sigmoid(logits).astype(np.float32)


# -- a tag in a library (store and encoder) -----------------------------------------------


def photo_ids(store, refs: Iterable[str | int]) -> list[int]:
    """Content ids for photo ids or indexed paths; one clear error for any unknown one."""
    out = []
    for ref in refs:
        raw = str(ref).strip()
        if not raw:
            raise InputError("give a photo's id or its path, not an empty value")
        if raw.isascii() and raw.isdigit():
            if store.content(int(raw)) is None:
                raise InputError(f"no photo with id {raw} in the library")
            out.append(int(raw))
            continue
        try:
            path = str(Path(raw).expanduser().resolve())
        except (OSError, ValueError, RuntimeError):
            raise InputError(f"{raw!r} is not a photo's id or path") from None
        cid = store.content_for_path(path)
        if cid is None:
            raise InputError(f"{raw} is not an indexed photo (index it first, or give its id)")
        out.append(int(cid))
    return out


def check_known(store, names: Iterable[str]) -> None:
    """One clear error for a tag name the library does not have."""
    for name in names:
        if store.tag(name) is None:
            raise InputError(f"no tag named {name!r} (see `pixseek tags`)")


def classifier_of(tag) -> Classifier | None:
    if tag is None or tag.weights is None:
        return None
    return Classifier(np.frombuffer(tag.weights, dtype="<f4").copy(), float(tag.bias),
                      float(tag.threshold))


def train(store, encode_texts, model: str, name: str,
          logit_scale: float | Callable[[], float] | None = None) -> Classifier | None:
    """Fit a tag's classifier for ``model`` from its examples and prompts, and store it.
    ``encode_texts(list of str) -> vectors`` is called only when the tag has prompts.
    ``logit_scale`` (a number, or a function asked only for a tag with prompts only) is the
    model's calibrated zero-shot scale (``search.calibration.logit_scale``); without it a
    prompt-only tag is cut by Otsu's method. None: the library has no vectors of ``model``
    yet."""
    tag = store.tag(name)
    if tag is None:
        raise InputError(f"no tag named {name!r} (see `pixseek tags`)")
    examples = store.tag_examples(tag.id)
    vectors = store.vectors(model, examples)
    pos = np.array([vectors[c] for c, p in examples.items() if p and c in vectors])
    neg = np.array([vectors[c] for c, p in examples.items() if not p and c in vectors])
    prompts = tag.prompt_list
    if not len(pos) and not prompts:
        raise InputError(f"tag {name!r} has no positive example and no text prompt: "
                         "add one with --add or --text")
    library = store.sample_vectors(model, LIBRARY_SAMPLE)
    if not library.size:  # nothing to calibrate on yet: fitted once photos are indexed
        return None
    txt = encode_texts(prompts) if prompts else None
    scale = contrasts = None
    if not len(pos) and logit_scale is not None:
        scale = logit_scale() if callable(logit_scale) else float(logit_scale)
        contrasts = encode_texts(list(CONTRAST_PROMPTS))
    classifier = fit(pos if len(pos) else None, neg if len(neg) else None, txt,
                     library if library.size else None, scale, contrasts)
    store.fit_tag(tag.id, tag.version, model, classifier.weights, classifier.bias,
                  classifier.threshold)
    return classifier


def teach(store, model: str, encode_texts, name: str, add: Iterable[str | int] = (),
          reject: Iterable[str | int] = (), texts: Iterable[str] = (),
          logit_scale: float | Callable[[], float] | None = None,
          temperature: object = None) -> dict:
    """Add examples (photo ids or paths) and prompts to a tag, refit it and apply it to the
    whole library. Everything is checked before anything is written. ``logit_scale``: as
    for ``train``; a ``temperature`` (as the user gave it) overrides it with its inverse."""
    name = check_name(name)
    if temperature is not None:
        if (isinstance(temperature, bool) or not isinstance(temperature, int | float)
                or not 0 < temperature < float("inf")):
            raise InputError(f"temperature must be a number above 0, not {temperature!r}")
        logit_scale = 1.0 / temperature
    texts = [t.strip() for t in texts]
    if any(not t for t in texts):
        raise InputError("--text: give the words the tag is about, e.g. --text 'a receipt'")
    positives, negatives = photo_ids(store, add), photo_ids(store, reject)
    if not (positives or negatives or texts):
        raise InputError(f"tag {name!r}: give examples (--add, --not) or a prompt (--text)")
    both = set(positives) & set(negatives)
    if both:
        raise InputError(f"photo {min(both)} is given both as an example and as --not")
    tag = store.tag(name)
    known = store.tag_examples(tag.id) if tag else {}
    has_positive = any(known.get(c, False) for c in known if c not in negatives) or positives
    if not has_positive and not texts and not (tag and tag.prompt_list):
        raise InputError(f"tag {name!r} needs at least one example (--add) or a prompt "
                         "(--text), not only --not")
    store.require_writable()
    store.teach_tag(name, positives, negatives, texts)
    train(store, encode_texts, model, name, logit_scale)
    apply_to_library(store, model, [name])
    return describe(store, name)


def describe(store, name: str) -> dict:
    """A tag's examples, prompts, version and member count."""
    tag = store.tag(name)
    if tag is None:
        raise InputError(f"no tag named {name!r} (see `pixseek tags`)")
    examples = store.tag_examples(tag.id)
    count = next((n for t, n in store.all_tags() if t.id == tag.id), 0)
    return {"name": tag.name, "version": tag.version, "count": count,
            "positives": sorted(c for c, p in examples.items() if p),
            "negatives": sorted(c for c, p in examples.items() if not p),
            "prompts": tag.prompt_list, "threshold": tag.threshold}


def members(store, name: str) -> list[dict]:
    """A tag's members, best first: {"id", "path", "score"} (path: its first indexed file)."""
    tag = store.tag(check_name(name))
    if tag is None:
        raise InputError(f"no tag named {name!r} (see `pixseek tags`)")
    return _with_paths(store, store.tag_members(tag.id))


def _with_paths(store, scored: list[tuple[int, float]]) -> list[dict]:
    paths = store.paths_for_contents([cid for cid, _ in scored])
    return [{"id": cid, "path": paths[cid][0], "score": round(float(score), 4)}
            for cid, score in scored if cid in paths]


def suggestions(store, model: str, name: str, k: int = 20) -> list[dict]:
    """``suggest`` with paths: {"id", "path", "score"}."""
    if k < 1:
        raise InputError(f"k must be 1 or more, not {k}")
    return _with_paths(store, suggest(store, model, check_name(name), k))


def apply_pending(store, model: str, encode_texts,
                  logit_scale: float | Callable[[], float] | None = None) -> dict[str, int]:
    """What the indexer calls after adding photos: tags fitted for another model (or never
    fitted) are refitted for ``model``, then every tag scores the photos it has not seen."""
    for tag, _ in store.all_tags():
        if tag.model != model or tag.weights is None:
            try:
                train(store, encode_texts, model, tag.name, logit_scale)
            except InputError:  # examples without a vector for this model yet
                continue
    return apply_to_library(store, model)


def apply_to_library(store, model: str, names: list[str] | None = None,
                     chunk: int = 8192) -> dict[str, int]:
    """Bring fitted tags of ``model`` up to date: each scores the embeddings newer than the
    last one it was applied to (all of them after a refit), in one pass over the store for
    every tag together. {tag name: members added}."""
    tags = [t for t, _ in store.all_tags() if t.model == model and t.weights is not None
            and (names is None or t.name in names)]
    newest = store.change_marks(model)[0]
    tags = [t for t in tags if t.applied_upto < newest]
    if not tags:
        return {}
    start = min(t.applied_upto for t in tags)
    classifiers = [classifier_of(t) for t in tags]
    members: list[list[tuple[int, float]]] = [[] for _ in tags]
    marks = np.array([t.applied_upto for t in tags])

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for emb_ids, cids, vecs in store.iter_embeddings(model, start, newest, chunk):
            yield np.stack([emb_ids, cids], axis=1), vecs

    for ids, scores in apply(classifiers, chunks()):
        fresh = ids[:, 0][:, None] > marks[None, :]
        hit = (scores >= 0.5) & fresh
        for j in np.flatnonzero(hit.any(0)):
            rows = np.flatnonzero(hit[:, j])
            members[j] += zip(ids[rows, 1].tolist(), scores[rows, j].tolist(), strict=True)
    added = {}
    for tag, found in zip(tags, members, strict=True):
        # A person's answers outrank the classifier: positives in, negatives out.
        examples = store.tag_examples(tag.id)
        seen = {cid for cid, _ in found}
        found = [(cid, score) for cid, score in found if examples.get(cid, True)]
        found += [(cid, 0.5) for cid, positive in examples.items()
                  if positive and cid not in seen and (tag.applied_upto == 0)]
        if store.save_tag_members(tag.id, tag.version, found, newest,
                                  replace=tag.applied_upto == 0):
            added[tag.name] = len(found)
    return added


def suggest(store, model: str, name: str, k: int = 20,
            chunk: int = 8192) -> list[tuple[int, float]]:
    """The k photos, not yet examples, whose scores lie nearest the threshold: confirming or
    rejecting them teaches the classifier the most. (content id, score), nearest first."""
    tag = store.tag(name)
    if tag is None:
        raise InputError(f"no tag named {name!r} (see `pixseek tags`)")
    classifier = classifier_of(tag)
    if classifier is None or tag.model != model:
        return []
    examples = store.tag_examples(tag.id)
    best_ids = np.zeros(0, dtype=np.int64)
    best_gap = np.zeros(0, dtype=np.float32)
    best_scores = np.zeros(0, dtype=np.float32)
    for _emb, cids, vecs in store.iter_embeddings(model, chunk=chunk):
        logit = classifier.logits(vecs) - np.float32(classifier.threshold)
        keep = np.array([c not in examples for c in cids.tolist()], dtype=bool)
        ids = np.concatenate([best_ids, cids[keep]])
        gap = np.concatenate([best_gap, np.abs(logit[keep])])
        sc = np.concatenate([best_scores, _sigmoid(logit[keep]).astype(np.float32)])
        order = np.argsort(gap, kind="stable")[:k]
        best_ids, best_gap, best_scores = ids[order], gap[order], sc[order]
    return list(zip(best_ids.tolist(), best_scores.tolist(), strict=True))
