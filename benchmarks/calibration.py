"""Zero-shot calibration (``search.calibration``): expected calibration error before and
after, on held-out photos.

    python benchmarks/calibration.py [--model offline] [--splits 5] [--out bench-out]

Every real sample photo on this machine (``search.samples``) is encoded once with its three
captions. Each split shuffles the photos into two halves: the logit scale is fitted on one
half (``search.calibration.fit_scale``: each photo and caption against 4 captions of other
photos of that half, 20 draws), and measured on the other half, each photo and each of its
captions against 4 captions of other held-out photos, once. "Before" is the model's own
logit scale (CLIP's 100), "after" the fitted one. It prints a markdown table (the mean over
splits, then each split) and writes ``bench-out/calibration.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = Path("bench-out")
KEYS = ("accuracy", "mean_top", "ece", "nll", "max_wrong")


def run(model: str, splits: int) -> dict:
    from search import calibration
    from search.encoders import load_encoder
    from search.samples import require_photos

    encoder = load_encoder(model, device="cpu")
    photos = require_photos(None)
    started = time.perf_counter()
    similarity, owner = calibration.similarities(encoder, photos)
    encoded_s = time.perf_counter() - started
    rows = []
    for split in range(splits):
        rng = np.random.default_rng(split)
        order = rng.permutation(len(photos))
        fit_on, held_out = order[: len(order) // 2], order[len(order) // 2:]
        trials = calibration.choices(similarity, owner, rng, calibration.DRAWS, among=fit_on)
        scale = calibration.fit_scale(trials)
        test = calibration.choices(similarity, owner, rng, 1, among=held_out)
        rows.append({"split": split, "logit_scale": scale,
                     "before": calibration.measure(test, encoder.logit_scale),
                     "after": calibration.measure(test, scale)})
    mean = {when: {k: float(np.mean([r[when][k] for r in rows])) for k in KEYS}
            for when in ("before", "after")}
    for when in ("before", "after"):
        mean[when]["max_wrong"] = float(max(r[when]["max_wrong"] for r in rows))
        mean[when]["gap"] = float(np.mean([abs(r[when]["mean_top"] - r[when]["accuracy"])
                                           for r in rows]))
    return {"model": encoder.model_id, "own_logit_scale": encoder.logit_scale,
            "photos": len(photos), "captions": int(len(owner)), "splits": rows, "mean": mean,
            "encode_s": round(encoded_s, 1), "machine": platform.processor() or platform.machine(),
            "command": "python benchmarks/calibration.py " + " ".join(sys.argv[1:])}


def markdown(result: dict) -> str:
    lines = [
        f"Zero-shot calibration, {result['model']}: {result['photos']} sample photos "
        f"({result['captions']} captions), fitted on one half and measured on the other; "
        "each held-out photo and caption against 4 captions of other held-out photos.",
        "",
        "| split | scale | accuracy | mean top p before | after | ECE before | after "
        "| worst wrong p before | after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["splits"]:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['split']} | {r['logit_scale']:.1f} | {a['accuracy']:.3f} | "
                     f"{b['mean_top']:.3f} | {a['mean_top']:.3f} | {b['ece']:.3f} | "
                     f"{a['ece']:.3f} | {b['max_wrong']:.3f} | {a['max_wrong']:.3f} |")
    b, a = result["mean"]["before"], result["mean"]["after"]
    lines.append(f"| mean | | {a['accuracy']:.3f} | {b['mean_top']:.3f} | {a['mean_top']:.3f} "
                 f"| {b['ece']:.3f} | {a['ece']:.3f} | {b['max_wrong']:.3f} (max) | "
                 f"{a['max_wrong']:.3f} (max) |")
    lines.append("")
    lines.append(f"Mean |top p - accuracy| per split: before {b['gap']:.3f}, after "
                 f"{a['gap']:.3f}. Own logit scale {result['own_logit_scale']:g}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="offline")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    result = run(args.model, args.splits)
    table = markdown(result)
    print(table, end="")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(result, indent=2))
    (args.out / "calibration.md").write_text(table)


if __name__ == "__main__":
    main()
