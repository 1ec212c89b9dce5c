"""Image-to-image "similar" with the offline model, and text-to-image beside it.

    python benchmarks/similar.py [--per-class 20] [--variants 4] [--out bench-out]

The offline model's image vector is a probability-weighted average of the embeddings of
ImageNet class names (``search.encoders.offline``): good for text, weak between photos.
This measures, on labelled photos made here (no download):

- **shapes**: ``--per-class`` synthetic photos each of a circle, a square and a triangle
  (``benchmarks.tags.shape_photos``); precision@5 of same-shape neighbours;
- **scenes**: each real sample photo (``search.samples``) in ``--variants`` versions (crops
  of 55-85 % of the side, a mirror image, another brightness); precision@(variants - 1) of
  versions of the same photo among the nearest;
- **groups**: the real sample photos that share a kind with others, grouped by hand below
  (``GROUPS``: animals, fruit, people, buildings, space, vehicles); precision@3 of same-group
  photos among each grouped photo's 3 nearest (all 37 photos are candidates);
- **text**: each sample caption against the sample photos, recall@1 and @5.

for today's image vectors and for the proposal ``image = [cos a x u ; sin a x w]`` (u the
vector of today, w the classifier's unit penultimate features), ``text = [t ; 0]``: text
scores are exactly ``cos a`` times today's, so text ranking cannot change; the rows show
what photo-to-photo similarity gains at each angle a.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import numpy as np

ANGLES = (0, 30, 45, 60, 75, 90)  # degrees; 0 is today's vector
# Sample photos of one kind, by name (data/sample_photos.tsv); the rest belong to none.
GROUPS = {
    "animals": ("chelsea_cat", "mandrill_face", "happy_dog", "squirrel_on_branch",
                "swallowtail_butterfly"),
    "fruit": ("lone_apple", "single_orange", "citrus_and_kiwi"),
    "people": ("astronaut_portrait", "cameraman_tripod", "navy_officer_portrait",
               "basketball_catch", "soccer_kick"),
    "buildings": ("summer_palace_pagoda", "ornate_palace", "modern_building", "cobblestone_lane",
                  "aerial_town"),
    "space": ("deep_field_galaxies", "lunar_surface", "launch_pad_rocket"),
    "vehicles": ("yamaha_motorcycle", "blurry_car"),
}


def variants(images: list, count: int, seed: int = 0) -> tuple[list, list[int]]:
    """``count`` versions of each image (the first one as it is): (images, source index)."""
    from PIL import ImageEnhance, ImageOps

    rng = random.Random(seed)
    out, owner = [], []
    for i, image in enumerate(images):
        image = image.convert("RGB")
        w, h = image.size
        for v in range(count):
            version = image
            if v:
                side = rng.uniform(0.55, 0.85)
                cw, ch = int(w * side), int(h * side)
                x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
                version = image.crop((x, y, x + cw, y + ch))
                if v % 2:
                    version = ImageOps.mirror(version)
                version = ImageEnhance.Brightness(version).enhance(rng.uniform(0.7, 1.3))
            out.append(version)
            owner.append(i)
    return out, owner


def precision_at(vectors: np.ndarray, labels: list, k: int) -> float:
    """Mean share of same-label photos among each photo's k nearest others."""
    labels = np.asarray(labels)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :k]
    return float(np.mean(labels[nearest] == labels[:, None]))


def group_precision(vectors: np.ndarray, names: list[str], k: int = 3) -> float:
    """Mean share of same-group photos among each grouped photo's k nearest others."""
    group = {n: g for g, members in GROUPS.items() for n in members}
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    out = []
    for i, name in enumerate(names):
        if name in group:
            nearest = np.argsort(-sims[i])[:k]
            out.append(np.mean([group.get(names[j]) == group[name] for j in nearest]))
    return float(np.mean(out))


def recall_at(images: np.ndarray, texts: np.ndarray, owner: np.ndarray, k: int) -> float:
    ranks = np.argsort(-(texts @ images.T), axis=1)[:, :k]
    return float(np.mean([o in r for o, r in zip(owner, ranks, strict=True)]))


def features(encoder, images: list) -> tuple[np.ndarray, np.ndarray]:
    """(today's unit vectors, unit penultimate features of the classifier)."""
    import torch

    from search.encoders.pixels import to_model_input
    from search.preprocess import prepare_uint8, to_rgb

    today, pooled = [], []
    net = encoder.classifier
    for start in range(0, len(images), 16):
        batch = np.stack([prepare_uint8(to_rgb(img), encoder.spec)
                          for img in images[start:start + 16]])
        today.append(encoder.encode_pixels(batch))
        with torch.inference_mode():
            x = net.extract_features(to_model_input(batch, encoder.spec, encoder.device,
                                                    torch.float32))
            x = x.mean(dim=(2, 3))
        pooled.append(torch.nn.functional.normalize(x, dim=1).cpu().numpy())
    return np.concatenate(today), np.concatenate(pooled)


def mix(u: np.ndarray, w: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.concatenate([math.cos(a) * u, math.sin(a) * w], axis=1)


def run(per_class: int, count: int, out: Path | None) -> dict:
    from benchmarks.tags import shape_photos
    from search.encoders import load_encoder
    from search.samples import require_photos

    encoder = load_encoder("offline", device="cpu")
    shapes, shape_labels = shape_photos(per_class, seed=0)
    photos = require_photos(None)
    originals = []
    for p in photos:
        from PIL import Image

        with Image.open(p.path) as img:
            originals.append(img.convert("RGB"))
    scenes, owner = variants(originals, count)
    shape_u, shape_w = features(encoder, shapes)
    scene_u, scene_w = features(encoder, scenes)
    base_u, base_w = scene_u[::count], scene_w[::count]  # the unaltered photos
    captions = encoder.encode_texts([c for p in photos for c in p.captions])
    caption_owner = np.array([i for i, p in enumerate(photos) for _ in p.captions])
    text = np.concatenate([captions, np.zeros((len(captions), base_w.shape[1]),
                                              np.float32)], axis=1)
    rows = []
    for degrees in ANGLES:
        base = mix(base_u, base_w, degrees)
        rows.append({
            "angle": degrees,
            "shapes_p@5": precision_at(mix(shape_u, shape_w, degrees), shape_labels, 5),
            "scenes_p@k": precision_at(mix(scene_u, scene_w, degrees), owner, count - 1),
            "groups_p@3": group_precision(base, [p.name for p in photos]),
            "text_r@1": recall_at(base, text, caption_owner, 1),
            "text_r@5": recall_at(base, text, caption_owner, 5),
        })
    result = {"model": encoder.model_id, "shapes": len(shapes), "scenes": len(scenes),
              "captions": len(captions), "rows": rows}
    print(f"| angle a | shapes P@5 ({len(shapes)} photos) | scenes P@{count - 1} "
          f"({len(scenes)} versions) | groups P@3 | text R@1 | text R@5 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        label = "today" if r["angle"] == 0 else f"{r['angle']}°"
        print(f"| {label} | {r['shapes_p@5']:.3f} | {r['scenes_p@k']:.3f} | "
              f"{r['groups_p@3']:.3f} | {r['text_r@1']:.3f} | {r['text_r@5']:.3f} |")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "similar.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    run(args.per_class, args.variants, args.out)


if __name__ == "__main__":
    main()
