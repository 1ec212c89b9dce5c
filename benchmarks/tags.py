"""Tags taught by example (``search.tags``): how well, and how fast.

    python benchmarks/tags.py quality [--per-class 40] [--shots 5] [--seeds 3] [--out bench-out]
    python benchmarks/tags.py prompts [--out bench-out]
    python benchmarks/tags.py speed [--photos 1000000] [--tags 20] [--dim 512] [--store DIR]

``quality`` draws a labelled set of synthetic photos, one shape each (circle, square or
triangle, any colour, size, place and background: ``training.synth``'s drawing), encodes them
with the offline model, and for each shape teaches a tag with ``--shots`` positive and as
many negative examples (the other shapes), the whole set standing in as the library. It
reports the F1 of each tag on the rest of the set (the photos that were not examples),
averaged over the shapes (macro F1), against text-only tags ("a circle" and the like,
scored as ``pixseek tag`` scores them: at the model's calibrated zero-shot scale against
generic captions), over several seeds.

``prompts`` makes a words-only tag of each caption of the sample photos (``search.samples``),
the sample photos standing in as the library, and reports how many photos it takes in and
how often its own photo is among them: at the calibrated temperature (what ``pixseek tag
NAME --text`` does), and cut by Otsu's method on the library's scores instead.

``speed`` times applying ``--tags`` tags to a synthetic matrix of ``--photos`` float16
vectors streamed in chunks, as ``apply_to_library`` streams the store's vectors: the matrix
product and the member selection. ``--store DIR`` also times the real path,
``search.tags.apply_to_library``, on a SQLite store of as many random vectors: reading them
out of the store, scoring, and writing the members.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

KINDS = ("circle", "square", "triangle")
PROMPTS = {k: f"a {k}" for k in KINDS}


def shape_photos(per_class: int, seed: int = 0) -> tuple[list, list[str]]:
    """``per_class`` photos of each kind, one shape each: (PIL images, labels)."""
    from training.synth import BACKGROUNDS, CELL, COLOURS, POSITIONS, SIDE, Scene, Shape, draw_scene

    rng = random.Random(seed)
    images, labels = [], []
    for kind in KINDS:
        for _ in range(per_class):
            size = rng.choice(list(SIDE))
            cell = rng.randrange(len(POSITIONS))
            row, col = divmod(cell, 3)
            slack = int((CELL - SIDE[size]) / 2) - 2
            x = round(CELL * (col + 0.5)) + rng.randint(-slack, slack)
            y = round(CELL * (row + 0.5)) + rng.randint(-slack, slack)
            colour = rng.choice(list(COLOURS))
            background = rng.choice(list(BACKGROUNDS))
            shape = Shape(kind, colour, size, POSITIONS[cell], x, y, COLOURS[colour])
            images.append(draw_scene(Scene(background, BACKGROUNDS[background], (shape,))))
            labels.append(kind)
    return images, labels


def f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = int(np.sum(predicted & truth))
    if tp == 0:
        return 0.0
    precision, recall = tp / int(predicted.sum()), tp / int(truth.sum())
    return 2 * precision * recall / (precision + recall)


def evaluate(vectors: np.ndarray, labels: list[str], prompts: dict[str, np.ndarray],
             shots: int = 5, seed: int = 0, scale: float | None = None,
             contrasts: np.ndarray | None = None) -> dict:
    """Macro F1 over the kinds on the photos that were not examples: taught tags and
    text-only tags (at logit ``scale`` against the encoded ``contrasts``; without them, cut
    by Otsu's method on the library)."""
    from search.tags import fit

    rng = np.random.default_rng(seed)
    labels_a = np.array(labels)
    taught, text_only = {}, {}
    for kind in sorted(set(labels)):
        pos = rng.choice(np.flatnonzero(labels_a == kind), shots, replace=False)
        neg = rng.choice(np.flatnonzero(labels_a != kind), shots, replace=False)
        rest = np.setdiff1d(np.arange(len(labels)), np.concatenate([pos, neg]))
        truth = labels_a[rest] == kind
        classifier = fit(vectors[pos], vectors[neg], prompts[kind][None], vectors)
        taught[kind] = f1(classifier.scores(vectors[rest]) >= 0.5, truth)
        text = fit(None, None, prompts[kind][None], vectors, scale, contrasts)
        text_only[kind] = f1(text.scores(vectors[rest]) >= 0.5, truth)
    return {"taught": taught, "text_only": text_only,
            "taught_macro_f1": float(np.mean(list(taught.values()))),
            "text_only_macro_f1": float(np.mean(list(text_only.values())))}


def quality(per_class: int, shots: int, seeds: int, out: Path | None) -> dict:
    from search.calibration import logit_scale
    from search.encoders import load_encoder
    from search.tags import CONTRAST_PROMPTS

    encoder = load_encoder("offline", device="cpu")
    scale = logit_scale(encoder)
    contrasts = encoder.encode_texts(list(CONTRAST_PROMPTS))
    runs = []
    for seed in range(seeds):
        images, labels = shape_photos(per_class, seed)
        vectors = encoder.encode_images(images)
        prompts = dict(zip(KINDS, encoder.encode_texts([PROMPTS[k] for k in KINDS]), strict=True))
        runs.append(evaluate(vectors, labels, prompts, shots, seed, scale, contrasts))
    result = {
        "model": encoder.model_id, "logit_scale": scale, "per_class": per_class,
        "shots": shots, "seeds": seeds,
        "taught_macro_f1": float(np.mean([r["taught_macro_f1"] for r in runs])),
        "text_only_macro_f1": float(np.mean([r["text_only_macro_f1"] for r in runs])),
        "worst_taught_macro_f1": float(min(r["taught_macro_f1"] for r in runs)),
        "runs": runs,
    }
    print("| tags | macro F1 on the rest (mean of seeds) | worst seed |")
    print("|---|---|---|")
    print(f"| taught: {shots} positive + {shots} negative | {result['taught_macro_f1']:.3f} | "
          f"{result['worst_taught_macro_f1']:.3f} |")
    print(f"| text only | {result['text_only_macro_f1']:.3f} | "
          f"{min(r['text_only_macro_f1'] for r in runs):.3f} |")
    _write(out, "tags-quality", result)
    return result


def prompts(out: Path | None) -> dict:
    from search.calibration import logit_scale
    from search.encoders import load_encoder
    from search.preprocess import decode
    from search.samples import require_photos
    from search.tags import CONTRAST_PROMPTS, fit

    encoder = load_encoder("offline", device="cpu")
    photos = require_photos(None)
    captions = encoder.encode_texts([c for p in photos for c in p.captions])
    owner = np.array([i for i, p in enumerate(photos) for _ in p.captions])
    pixels = [decode(p.path.read_bytes(), encoder.spec, draft=False).pixels for p in photos]
    vectors = np.concatenate([encoder.encode_pixels(np.stack(pixels[i:i + 16]))
                              for i in range(0, len(pixels), 16)])
    scale = logit_scale(encoder)
    contrasts = encoder.encode_texts(list(CONTRAST_PROMPTS))
    result = {"model": encoder.model_id, "logit_scale": scale, "photos": len(photos),
              "captions": len(captions)}
    for name, kwargs in (("calibrated", {"scale": scale, "contrasts": contrasts}),
                         ("otsu", {})):
        members = np.array([fit(None, None, c[None], vectors, **kwargs).scores(vectors) >= 0.5
                            for c in captions])
        result[name] = {"mean_members": float(members.sum(1).mean()),
                        "own_photo_member": float(members[np.arange(len(owner)), owner].mean()),
                        "empty": float(np.mean(members.sum(1) == 0))}
    print("| words-only tag | photos taken in (mean) | own photo taken in | empty tags |")
    print("|---|---|---|---|")
    for name in ("calibrated", "otsu"):
        r = result[name]
        print(f"| {name} | {r['mean_members']:.1f} of {len(photos)} | "
              f"{r['own_photo_member']:.2f} | {r['empty']:.2f} |")
    _write(out, "tags-prompts", result)
    return result


def speed(photos: int, tags: int, dim: int, chunk: int = 65536, out: Path | None = None) -> dict:
    from search.tags import Classifier, apply

    rng = np.random.default_rng(0)
    matrix = np.empty((photos, dim), dtype=np.float16)
    for start in range(0, photos, chunk):
        part = rng.standard_normal((min(chunk, photos - start), dim), dtype=np.float32)
        matrix[start:start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    classifiers = [Classifier(rng.standard_normal(dim).astype(np.float32), 0.0, 2.0)
                   for _ in range(tags)]
    ids = np.arange(photos, dtype=np.int64)
    started = time.perf_counter()
    members = 0
    chunks = ((ids[s:s + chunk], matrix[s:s + chunk]) for s in range(0, photos, chunk))
    for part_ids, scores in apply(classifiers, chunks):
        hit = scores >= 0.5
        for j in np.flatnonzero(hit.any(0)):
            members += len(part_ids[hit[:, j]])
    seconds = time.perf_counter() - started
    result = {"photos": photos, "tags": tags, "dim": dim, "seconds": round(seconds, 2),
              "members": members}
    print(f"| apply {tags} tags to {photos:,} x {dim} float16 vectors | {seconds:.2f} s |")
    _write(out, "tags-speed", result)
    return result


def store_speed(photos: int, tags: int, dim: int, folder: Path, out: Path | None = None) -> dict:
    """Time ``apply_to_library``: ``tags`` fitted tags over a SQLite store of ``photos``
    random vectors (built once in ``folder``, reused on the next run)."""
    from search.store import Store
    from search.tags import apply_to_library

    folder.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{folder / 'tags-bench.db'}")
    model = "bench:random"
    rng = np.random.default_rng(0)
    have = store.change_marks(model)[0]
    for start in range(have, photos, 20_000):
        n = min(20_000, photos - start)
        vecs = rng.standard_normal((n, dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        with store.session() as s:
            ids = store.insert_contents(s, [
                {"hash": f"{start + i:032x}", "size": 1, "width": 1, "height": 1}
                for i in range(n)])
            store.insert_embeddings(s, model, ids, vecs)
    for j in range(tags):
        tag = store.teach_tag(f"t{j}", prompts=[f"prompt {j}"])
        weights = rng.standard_normal(dim).astype(np.float32)
        store.fit_tag(tag.id, tag.version, model, weights, 0.0, 2.0)
    started = time.perf_counter()
    added = apply_to_library(store, model)
    seconds = time.perf_counter() - started
    store.close()
    result = {"photos": photos, "tags": tags, "dim": dim, "seconds": round(seconds, 2),
              "members": sum(added.values())}
    print(f"| apply {tags} tags to a {photos:,}-photo SQLite store (read, score, write "
          f"{result['members']:,} members) | {seconds:.2f} s |")
    _write(out, "tags-store-speed", result)
    return result


def _write(out: Path | None, name: str, result: dict) -> None:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--per-class", type=int, default=40)
    q.add_argument("--shots", type=int, default=5)
    q.add_argument("--seeds", type=int, default=3)
    q.add_argument("--out", type=Path, default=None)
    sub.add_parser("prompts").add_argument("--out", type=Path, default=None)
    s = sub.add_parser("speed")
    s.add_argument("--photos", type=int, default=1_000_000)
    s.add_argument("--tags", type=int, default=20)
    s.add_argument("--dim", type=int, default=512)
    s.add_argument("--out", type=Path, default=None)
    s.add_argument("--store", type=Path, default=None,
                   help="Also time apply_to_library on a SQLite store built in this folder.")
    args = parser.parse_args()
    if args.what == "quality":
        quality(args.per_class, args.shots, args.seeds, args.out)
    elif args.what == "prompts":
        prompts(args.out)
    else:
        speed(args.photos, args.tags, args.dim, out=args.out)
        if args.store is not None:
            store_speed(args.photos, args.tags, args.dim, args.store, out=args.out)


if __name__ == "__main__":
    main()
