"""Near-duplicate detection (``pixseek duplicates``): its threshold, and its speed.

    python benchmarks/duplicates.py calibrate [--model offline] [--out bench-out]
    python benchmarks/duplicates.py speed DATA_DIR [--model offline] [--threshold X]

``calibrate`` measures pair precision and recall per cosine threshold on real photos mixed
with near-duplicate copies of them, the way a library holds them:

- the originals: every real sample photo on this machine (``search.samples``: scikit-image,
  scikit-learn, matplotlib, and OpenCV's sample data when installed), plus real photos of
  the same kind of scene that must *not* group (scikit-image's brick, grass and gravel);
- real burst shots, which *must* group with their partner: the other half of the stereo
  and motion pairs shipped beside the samples (scikit-image's motorcycle_right; OpenCV's
  aloeR, leuvenB, basketball2, rubberwhale2, right.jpg) and OpenCV's ela_modified, an
  edited copy of ela_original;
- copies of each original made with Pillow (``COPIES``): JPEG re-saves at quality 85 and
  40, resizes to 1/2 and 1/3, a crop of 5 % a side, a crop of 12 % off one corner,
  brightness +25 % and -25 %, and a synthetic burst (shifted 3 %, turned 2 degrees).

Every file is indexed with ``pixseek index``'s pipeline, then for each threshold: **direct**
pairs (cosine >= threshold), **grouped** pairs (in one connected group, as union-find
makes them), and the method itself, ``search.duplicates.find_groups`` at the model's
default threshold through the vector index. A pair is positive when both files come from
the same original (its copies and real burst partners). It prints a markdown table and
writes ``bench-out/duplicates-calibration.{json,md}``.

``speed`` times ``find_groups`` on a data directory, e.g. a synthetic library from
``python benchmarks/library_scale.py build /tmp/lib100k --photos 100000 --model offline``.
``--plant N`` first adds N near-duplicate twins of random photos there (cosine 0.935 to
0.995 to their original, so every one must be found) and folds them into the vector
index's snapshot, so the recall of the scan through the approximate index is measured
too (once: a second run finds them planted).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = Path("bench-out")
THRESHOLDS = [round(0.90 + 0.005 * i, 3) for i in range(20)]  # 0.900 .. 0.995


def _jpeg(quality: int) -> dict:
    return {"format": "JPEG", "quality": quality}


def _resize(img: Image.Image, factor: float) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))),
                      Image.Resampling.LANCZOS)


def _crop(img: Image.Image, left: float, top: float, right: float, bottom: float):
    w, h = img.size
    return img.crop((round(w * left), round(h * top), round(w * (1 - right)),
                     round(h * (1 - bottom))))


def _burst(img: Image.Image) -> Image.Image:
    """The next frame of a burst, roughly: the camera moved 3 % and turned 2 degrees."""
    turned = img.rotate(2, resample=Image.Resampling.BICUBIC)
    return _crop(turned, 0.07, 0.02, 0.01, 0.06)  # off-centre, and no black corners


# name -> (make the copy from the original's RGB pixels, how to save it)
COPIES: dict[str, tuple[Callable[[Image.Image], Image.Image], dict]] = {
    "jpeg85": (lambda im: im, _jpeg(85)),
    "jpeg40": (lambda im: im, _jpeg(40)),
    "half": (lambda im: _resize(im, 1 / 2), _jpeg(85)),
    "third": (lambda im: _resize(im, 1 / 3), _jpeg(85)),
    "crop5": (lambda im: _crop(im, 0.05, 0.05, 0.05, 0.05), _jpeg(85)),
    "crop12corner": (lambda im: _crop(im, 0.12, 0.12, 0, 0), _jpeg(85)),
    "brighter": (lambda im: ImageEnhance.Brightness(im).enhance(1.25), _jpeg(85)),
    "darker": (lambda im: ImageEnhance.Brightness(im).enhance(0.75), _jpeg(85)),
    "burst": (_burst, _jpeg(85)),
}

# Real photos beside the samples: (source, path in it, the sample it is a burst or edit of;
# None: a photo of its own, of the same kind of scene as others).
EXTRAS = [
    ("skimage", "data/motorcycle_right.png", "yamaha_motorcycle"),
    ("skimage", "data/brick.png", None),
    ("skimage", "data/grass.png", None),
    ("skimage", "data/gravel.png", None),
    ("opencv-doc", "aloeR.jpg", "potted_aloe"),
    ("opencv-doc", "leuvenB.jpg", "cobblestone_lane"),
    ("opencv-doc", "basketball2.png", "basketball_catch"),
    ("opencv-doc", "rubberwhale2.png", "toys_and_shells"),
    ("opencv-doc", "right.jpg", "textbooks_on_floor"),
    ("opencv-doc", "ela_modified.jpg", "notebook_corner"),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def make_copies(original: Path, dest: Path, stem: str,
                kinds: list[str] | None = None) -> dict[str, Path]:
    """Near-duplicate copies of ``original`` in ``dest``, ``<stem>__<kind>.jpg``, one per
    kind of ``COPIES`` (all by default)."""
    img = rgb(original)
    out = {}
    for kind in kinds or list(COPIES):
        make, save = COPIES[kind]
        path = dest / f"{stem}__{kind}.jpg"
        make(img).save(path, **save)
        out[kind] = path
    return out


def calibration_set(dest: Path, kinds: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """Write the calibration photos into ``dest``: {file name: (original's name, kind)}."""
    from search.samples import _source_dir, sample_photos

    dest.mkdir(parents=True, exist_ok=True)
    truth: dict[str, tuple[str, str]] = {}
    originals = [(p.name, p.path) for p in sample_photos()]
    for source, rel, of in EXTRAS:
        folder = _source_dir(source)
        if folder is None or not (folder / rel).is_file():
            continue
        name = Path(rel).stem
        if of is None:
            originals.append((name, folder / rel))
        elif of in {n for n, _ in originals}:
            target = dest / f"{of}__real-{name}{Path(rel).suffix.lower()}"
            shutil.copyfile(folder / rel, target)
            truth[target.name] = (of, "real burst/edit")
    for name, path in originals:
        target = dest / f"{name}{path.suffix.lower()}"
        shutil.copyfile(path, target)
        truth[target.name] = (name, "original")
        for kind, copy in make_copies(path, dest, name, kinds).items():
            truth[copy.name] = (name, kind)
    return truth


def index_folder(folder: Path, data_dir: Path, model: str):
    """Index ``folder`` into ``data_dir`` as ``pixseek index`` does; the Config."""
    from indexer.session import open_indexer
    from search.config import load_config

    empty = data_dir / "bench-config.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    empty.write_text("{}\n")
    config = load_config(empty, overrides={"data_dir": str(data_dir), "model.name": model},
                         environ={})
    with open_indexer(config) as indexer:
        summary = indexer.index([str(folder)])
    log(f"indexed {summary.encoded} photos, {summary.failed} failed")
    return config


def pair_scores(positive: np.ndarray, predicted: np.ndarray) -> dict:
    """Precision and recall of predicted pairs (upper triangles of boolean matrices)."""
    iu = np.triu_indices(len(positive), 1)
    pos, pred = positive[iu], predicted[iu]
    tp = int((pos & pred).sum())
    return {
        "predicted": int(pred.sum()), "true": tp, "positives": int(pos.sum()),
        "precision": tp / int(pred.sum()) if pred.sum() else 1.0,
        "recall": tp / int(pos.sum()) if pos.sum() else 1.0,
    }


def same_group(adjacent: np.ndarray) -> np.ndarray:
    """Connected components of a boolean adjacency matrix, as a same-group matrix."""
    n = len(adjacent)
    label = np.full(n, -1)
    for start in range(n):
        if label[start] >= 0:
            continue
        label[start], stack = start, [start]
        while stack:
            i = stack.pop()
            for j in np.nonzero(adjacent[i] & (label < 0))[0]:
                label[j] = start
                stack.append(j)
    return label[:, None] == label[None, :]


def evaluate_groups(names: list[str], truth: dict, groups) -> dict:
    """Pair precision and recall of ``find_groups``' groups against the truth."""
    at = {name: i for i, name in enumerate(names)}
    member = np.full(len(names), -1)
    for g, group in enumerate(groups):
        for m in [group.keep, *group.others]:
            for path in m.paths:
                member[at[Path(path).name]] = g
    predicted = (member[:, None] == member[None, :]) & (member[:, None] >= 0)
    labels = np.asarray([truth[n][0] for n in names])
    return pair_scores(labels[:, None] == labels[None, :], predicted)


def calibrate(args: argparse.Namespace) -> int:
    from search import duplicates
    from search.engine import Engine

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pixseek-dups-") as tmp:
        # The work folder is kept when given: a second run re-indexes nothing.
        work = Path(args.work) if args.work else Path(tmp)
        photos = work / "photos"
        truth = calibration_set(photos)
        log(f"{len(truth)} photos, {len({o for o, _ in truth.values()})} originals")
        started = time.perf_counter()
        config = index_folder(photos, work / "data", args.model)
        index_s = time.perf_counter() - started
        with Engine(config) as engine:
            model_id = engine.model_id
            ids, vectors = [], []
            for _e, cids, vecs in engine.store.iter_embeddings(model_id):
                ids += cids.tolist()
                vectors.append(vecs)
            matrix = np.concatenate(vectors)
            paths = engine.store.paths_for_contents(ids)
            names = [Path(paths[cid][0]).name for cid in ids]
            default = duplicates.threshold_for(model_id)
            started = time.perf_counter()
            groups = duplicates.find_groups(engine.store, engine.vectors, model_id)
            groups_s = time.perf_counter() - started
    labels = np.asarray([truth[n][0] for n in names])
    kinds = [truth[n][1] for n in names]
    cos = matrix @ matrix.T
    np.fill_diagonal(cos, -1)
    positive = labels[:, None] == labels[None, :]
    rows = []
    for t in sorted({*THRESHOLDS, default}):
        direct = pair_scores(positive, cos >= t)
        grouped = pair_scores(positive, same_group(cos >= t))
        rows.append({"threshold": t, "direct": direct, "grouped": grouped})
    method = evaluate_groups(names, truth, groups)
    # Per kind of copy: the share grouped with their original at the default threshold.
    together = same_group(cos >= default)
    original_of = {labels[i]: i for i in range(len(names)) if kinds[i] == "original"}
    per_kind: dict[str, list[int]] = {}
    for i, kind in enumerate(kinds):
        if kind != "original":
            per_kind.setdefault(kind, []).append(int(together[i, original_of[labels[i]]]))
    iu = np.triu_indices(len(names), 1)
    order = np.argsort(-cos[iu])
    negatives = [(float(cos[iu][o]), names[iu[0][o]], names[iu[1][o]])
                 for o in order if not positive[iu[0][o], iu[1][o]]][:8]
    originals = [i for i in range(len(names)) if kinds[i] == "original"]
    among = sorted(((float(cos[i, j]), names[i], names[j])
                    for i, j in combinations(originals, 2)), reverse=True)[:8]
    positives = sorted((float(cos[i, j]), names[i], names[j])
                       for i, j in combinations(range(len(names)), 2) if positive[i, j])[:8]
    result = {
        "model": model_id, "default_threshold": default, "photos": len(names),
        "originals": len(original_of), "index_seconds": round(index_s, 1),
        "find_groups_seconds": round(groups_s, 3), "thresholds": rows, "method": method,
        "per_kind_recall": {k: sum(v) / len(v) for k, v in per_kind.items()},
        "hardest_negatives": negatives, "closest_originals": among,
        "weakest_positives": positives,
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
    }
    md = markdown(result)
    print(md)
    (out / "duplicates-calibration.json").write_text(json.dumps(result, indent=1))
    (out / "duplicates-calibration.md").write_text(md)
    return 0


def markdown(r: dict) -> str:
    lines = [
        f"# Near-duplicate threshold: {r['model']}",
        "",
        f"{r['photos']} photos: {r['originals']} real originals, their copies and real "
        f"bursts. Default threshold {r['default_threshold']}.",
        "",
        "| threshold | direct P | direct R | grouped P | grouped R | grouped pairs |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["thresholds"]:
        d, g = row["direct"], row["grouped"]
        mark = " **(default)**" if row["threshold"] == r["default_threshold"] else ""
        lines.append(f"| {row['threshold']:.3f}{mark} | {d['precision']:.3f} | "
                     f"{d['recall']:.3f} | {g['precision']:.3f} | {g['recall']:.3f} | "
                     f"{g['predicted']} of {g['positives']} |")
    m = r["method"]
    lines += [
        "",
        f"find_groups (k-NN through the vector index + union-find) at the default: "
        f"precision {m['precision']:.3f}, recall {m['recall']:.3f} "
        f"({m['true']} of {m['predicted']} predicted pairs true, {m['positives']} positive), "
        f"{r['find_groups_seconds']} s.",
        "",
        "Recall per kind of copy at the default (grouped with its original): "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["per_kind_recall"].items()),
        "",
        "Closest different photos: " + "; ".join(
            f"{c:.4f} {a} / {b}" for c, a, b in r["hardest_negatives"][:5]),
        "",
        "Closest different originals (no copies): " + "; ".join(
            f"{c:.4f} {a} / {b}" for c, a, b in r["closest_originals"][:5]),
        "",
        "Least similar copies: " + "; ".join(
            f"{c:.4f} {a} / {b}" for c, a, b in r["weakest_positives"][:5]),
        "",
    ]
    return "\n".join(lines)


TWIN_ROOT = "/synthetic-library/twins"


def plant_twins(config, n: int, seed: int = 7) -> list[tuple[int, int]]:
    """Add ``n`` twins of random photos (unless planted before); (original, twin) ids."""
    import hashlib

    from search.engine import Engine
    from search.store import File
    from search.vectors import index_for

    marker = Path(config.data_path) / f"twins-{n}.json"
    if marker.exists():
        return [tuple(p) for p in json.loads(marker.read_text())]
    with Engine(config) as engine:
        store, model = engine.store, engine.model_id
        newest = store.change_marks(model)[0]
        rng = np.random.default_rng(seed)
        stored = store.vectors(model, rng.choice(np.arange(1, newest + 1), n, replace=False)
                               .tolist())
        originals = sorted(stored)
        v = np.stack([stored[c] for c in originals]).astype(np.float64)
        w = rng.standard_normal(v.shape)
        w -= (w * v).sum(1, keepdims=True) * v  # orthogonal to the original
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        cos = rng.uniform(0.935, 0.995, size=(len(v), 1))
        twins = (cos * v + np.sqrt(1 - cos**2) * w).astype(np.float32)
        with store.session() as s:
            ids = store.insert_contents(s, [
                {"hash": hashlib.blake2b(f"twin:{c}".encode(), digest_size=16).hexdigest(),
                 "size": 1_000_000, "width": 2000, "height": 1500, "format": "JPEG"}
                for c in originals])
            store.insert_embeddings(s, model, ids, twins)
            s.execute(File.__table__.insert(), [
                {"path": f"{TWIN_ROOT}/twin_{c:07d}.jpg", "size": 1_000_000,
                 "mtime_ns": 1_700_000_000_000_000_000, "content_id": t, "status": "ok"}
                for c, t in zip(originals, ids, strict=True)])
        index = index_for(store, model, config).open()
        index.persist(force=True)  # into the IVF snapshot, not the exact delta
    pairs = list(zip(originals, ids, strict=True))
    marker.write_text(json.dumps(pairs))
    return pairs


def speed(args: argparse.Namespace) -> int:
    from search import duplicates
    from search.config import load_config
    from search.engine import Engine

    data_dir = Path(args.data_dir)
    config_file = data_dir / "bench-config.yaml"
    if not config_file.exists():
        config_file.write_text("{}\n")
    config = load_config(config_file, overrides={"data_dir": str(data_dir),
                                                 "model.name": args.model}, environ={})
    planted = plant_twins(config, args.plant) if args.plant else []
    with Engine(config) as engine:
        started = time.perf_counter()
        index = engine.vectors
        open_s = time.perf_counter() - started
        count = index.count
        started = time.perf_counter()
        last = [started]

        def progress(done: int) -> None:
            if time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                log(f"  {done} of {count} photos ({last[0] - started:.0f} s)")

        groups = duplicates.find_groups(engine.store, index, engine.model_id, args.threshold,
                                        progress=progress)
        seconds = time.perf_counter() - started
        group_of = {m.id: g for g, group in enumerate(groups)
                    for m in [group.keep, *group.others]}
        found = sum(a in group_of and group_of[a] == group_of.get(b) for a, b in planted)
        result = {"photos": count, "index": index.describe().get("kind"),
                  "depth": index.describe().get("depth"), "scan_depth": duplicates.SCAN_DEPTH,
                  "planted_pairs": len(planted),
                  "planted_found": found, "other_groups": len(groups) - found,
                  "open_seconds": round(open_s, 2), "seconds": round(seconds, 1),
                  "photos_per_second": round(count / seconds), "groups": len(groups),
                  "threshold": args.threshold or duplicates.threshold_for(engine.model_id)}
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"duplicates-speed-{count}.json").write_text(json.dumps(result, indent=1))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("calibrate", help="precision and recall per threshold")
    c.add_argument("--model", default="offline")
    c.add_argument("--out", default=str(DEFAULT_OUT))
    c.add_argument("--work", help="keep the photos and their index here (reused next time)")
    s = sub.add_parser("speed", help="time find_groups on a data directory")
    s.add_argument("data_dir")
    s.add_argument("--model", default="offline")
    s.add_argument("--threshold", type=float)
    s.add_argument("--plant", type=int, default=0, help="near-duplicate twins to add first")
    s.add_argument("--out", default=str(DEFAULT_OUT))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return calibrate(args) if args.command == "calibrate" else speed(args)


if __name__ == "__main__":
    raise SystemExit(main())
