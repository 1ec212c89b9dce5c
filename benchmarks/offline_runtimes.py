"""The ``offline`` model's image classifier on torch, ONNX Runtime and OpenVINO, side by side.

Loads the offline encoder once per ``model.runtime`` (exporting on first use, outside the
clock), then times ``encode_pixels`` on one batch of real sample photos, decoded
beforehand: every runtime once per round, in turn, so a busy machine's drift falls on all
alike, each after a pause that lets the previous one's threads stop spinning. Reports the
median images/s, its ratio to torch and the lowest cosine of each runtime's vectors to
torch's.

    python benchmarks/offline_runtimes.py                 # batch 32, 5 rounds
    python benchmarks/offline_runtimes.py --rounds 9 --batch-size 64

Prints a markdown table and writes ``bench-out/offline_runtimes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--runtimes", nargs="+", default=["torch", "onnxruntime", "openvino"])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from search.encoders import load_encoder
    from search.preprocess import decode
    from search.samples import sample_photos

    encoders = {r: load_encoder("offline", device="cpu", runtime=r) for r in args.runtimes}
    photos = sample_photos()
    spec = encoders[args.runtimes[0]].spec
    pixels = np.stack([decode(photos[i % len(photos)].path, spec, uint8=True).pixels
                       for i in range(args.batch_size)])
    vectors = {r: enc.encode_pixels(pixels) for r, enc in encoders.items()}  # and warm-up
    reference = vectors.get("torch", next(iter(vectors.values())))
    rates: dict[str, list[float]] = {r: [] for r in encoders}
    for _ in range(args.rounds):
        for runtime, enc in encoders.items():
            time.sleep(0.3)  # the previous runtime's threads stop spinning first
            t0 = time.perf_counter()
            enc.encode_pixels(pixels)
            rates[runtime].append(len(pixels) / (time.perf_counter() - t0))
    medians = {r: statistics.median(v) for r, v in rates.items()}
    base = medians.get("torch", next(iter(medians.values())))
    lines = [
        f"offline model, batch {args.batch_size} of sample photos, {args.rounds} rounds "
        f"interleaved (median), {torch.get_num_threads()} threads, {os.cpu_count()} CPUs",
        "",
        "| runtime | images/s | vs torch | min cosine to torch |",
        "|---|---:|---:|---:|",
    ]
    for runtime, rate in medians.items():
        cos = float((vectors[runtime] * reference).sum(1).min())
        lines.append(f"| {runtime} | {rate:.1f} | {rate / base:.2f}x | {cos:.6f} |")
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "offline_runtimes.json").write_text(json.dumps(
        {"rates": rates, "medians": medians, "batch_size": args.batch_size,
         "threads": torch.get_num_threads(), "load": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
