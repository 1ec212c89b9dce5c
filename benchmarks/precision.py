"""``model.precision: auto`` against ``fp32``: what ``pixseek index`` gains on this machine.

Indexes the same folder of sub-megapixel JPEGs (``--count`` photos, ``--long-side`` px, made
from the real sample photos by ``benchmarks/photos.py``) with a randomly initialised CLIP of
ViT-B/32 shape, once per precision per round, the precisions interleaved in one run. Each
index goes through ``indexer.session.open_indexer``, what ``pixseek index`` runs, into a fresh
data dir (nothing reused). Images/s is ``encoded / seconds`` of the index run; the model load
is outside the clock. ``auto`` measures its choice the first time (its cost is reported
apart: a one-time cost per model and machine); later rounds find it cached, as a user does.

    python benchmarks/precision.py                    # 96 photos, 800 px, 2 rounds
    python benchmarks/precision.py --rounds 3 --precisions fp32 int8 auto
    python benchmarks/precision.py --precisions torch:fp32 onnxruntime:int8 \
        openvino:int8-static auto:auto         # RUNTIME:PRECISION pairs (model.runtime)

A bare precision runs on torch. Each pair's *ceiling* is the encoder alone on a batch of
already-decoded pixels (the best of 3 calls): what indexing could reach if decoding were
free; ``of ceiling`` is the index run's rate over it. On a CPU decoding is not free: the
decode workers share the cores with the model. *decode ms* is the CPU time one photo's
decode job takes (read, hash, draft decode, resize, crop: what a worker does), and *shared ceiling*
the encoder's rate with that time taken from the same cores, ``1 / (1 / ceiling + decode /
cores)``: the most an index run can reach on this machine with perfect overlap.

Prints a markdown table and writes ``bench-out/precision.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[precision] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=96)
    ap.add_argument("--long-side", type=int, default=800)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args(argv)

    import torch

    from benchmarks.photos import make_benchmark_photos
    from indexer.session import open_indexer
    from search.config import load_config
    from search.encoders.precision import cpu_name
    from training.scratch import random_clip

    out = args.out
    photos = make_benchmark_photos(
        out / "photos" / f"{args.long_side}px", count=args.count, long_side=args.long_side
    )
    model_dir = random_clip(out / "models" / "clip-vit-b-32-random", "vit-b-32")

    results: dict[str, list[float]] = {p: [] for p in args.precisions}
    ceilings: dict[str, list[float]] = {p: [] for p in args.precisions}
    chosen: dict[str, str] = {}
    decode_costs: list[float] = []  # CPU seconds per photo, every measurement
    auto_costs: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pixseek-precision-") as tmp:
        tmp_root = Path(tmp)
        folder = tmp_root / "photos"
        folder.mkdir()
        for p in photos:
            try:
                os.link(p, folder / p.name)
            except OSError:
                shutil.copy2(p, folder / p.name)
        empty = tmp_root / "empty.yaml"
        empty.write_text("{}\n")
        caches: dict[str, Path] = {}  # each auto pair's choice from the first round, reused
        for rnd in range(args.rounds):
            for pair in args.precisions:
                runtime, _, precision = pair.rpartition(":")
                runtime = runtime or "torch"
                data_dir = tmp_root / f"data-{rnd}-{pair.replace(':', '-')}"
                data_dir.mkdir()
                if pair in caches:
                    for name in ("precision.json", "runtime.json"):
                        if (caches[pair] / name).is_file():
                            shutil.copy2(caches[pair] / name, data_dir / name)
                config = load_config(
                    empty,
                    overrides={
                        "data_dir": str(data_dir),
                        "model.name": str(model_dir),
                        "model.device": "cpu",
                        "model.precision": precision,
                        "model.runtime": runtime,
                        "ocr.enabled": False,  # the CLIP pass alone (OCR: ocr_throughput.py)
                        "model.batch_size": args.batch_size,
                    },
                    environ={},
                )
                t0 = time.perf_counter()
                with open_indexer(config, progress=False) as indexer:
                    loaded = time.perf_counter() - t0
                    summary = indexer.index([str(folder)])
                    enc = indexer.encoder
                if summary.encoded != len(photos) or summary.failed:
                    raise SystemExit(f"did not encode every photo: {summary.as_dict()}")
                ceiling = _ceiling(enc, photos[: args.batch_size])
                decode_costs.append(_decode_seconds(enc.spec, photos[: 2 * args.batch_size]))
                rate = summary.encoded / summary.seconds
                results[pair].append(rate)
                ceilings[pair].append(ceiling)
                runs_as = f"{getattr(enc, 'runtime', 'torch')} {enc.precision}"
                chosen[pair] = runs_as
                if "auto" in pair and pair not in caches:
                    caches[pair] = data_dir
                    auto_costs[pair] = loaded
                    chosen[f"{pair} reason"] = enc.precision_reason
                log(f"round {rnd + 1} {pair} ({runs_as}): {rate:.1f} img/s, ceiling "
                    f"{ceiling:.1f} (model load {loaded:.1f} s)")

    medians = {p: statistics.median(v) for p, v in results.items()}
    ceiling_medians = {p: statistics.median(v) for p, v in ceilings.items()}
    base = medians.get("fp32") or medians.get("torch:fp32")
    decode_s = statistics.median(decode_costs)
    cores = os.cpu_count() or 1
    lines = [
        f"{args.count} photos, {args.long_side} px long side, random ViT-B/32 CLIP, cpu, "
        f"{torch.get_num_threads()} threads, batch {args.batch_size}, {args.rounds} rounds "
        f"interleaved (median); decode {decode_s * 1000:.2f} ms CPU a photo, {cores} cores",
        "",
        "| runtime:precision | runs as | images/s | vs torch fp32 (range) | ceiling | "
        "of ceiling | shared ceiling | of shared |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p, m in medians.items():
        ratio = "-"
        if base:
            lo, hi = min(results[p]) / base, max(results[p]) / base
            ratio = f"{m / base:.2f}x ({lo:.2f}-{hi:.2f})"
        c = ceiling_medians[p]
        shared = 1 / (1 / c + decode_s / cores)
        lines.append(f"| {p} | {chosen[p]} | {m:.1f} | {ratio} | {c:.1f} | {m / c:.2f} | "
                     f"{shared:.1f} | {m / shared:.2f} |")
    for pair, cost in auto_costs.items():
        lines += ["", f"{pair}, first use: load + measure {cost:.1f} s once (exports cached "
                  f"before excluded); {chosen.get(f'{pair} reason', '')}"]
    print("\n".join(lines))
    out.mkdir(parents=True, exist_ok=True)
    (out / "precision.json").write_text(json.dumps({
        "runs": results, "medians": medians, "ceilings": ceilings, "runs_as": chosen,
        "decode_cpu_s_per_photo": decode_s, "cores": cores,
        "auto_first_load_s": auto_costs,
        "count": args.count, "long_side": args.long_side, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "cpu": cpu_name(),
        "load_average": os.getloadavg(), "torch": torch.__version__,
    }, indent=2))
    return 0


def _ceiling(enc, photos: list[Path], calls: int = 3) -> float:
    """Images/s of the encoder alone on one batch of decoded pixels (best of ``calls``)."""
    import numpy as np

    from search.preprocess import decode

    pixels = np.stack([decode(p, enc.spec, uint8=True).pixels for p in photos])
    enc.encode_pixels(pixels)  # warm-up
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        enc.encode_pixels(pixels)
        best = min(best, time.perf_counter() - t0)
    return len(pixels) / best


def _decode_seconds(spec, photos: list[Path]) -> float:
    """CPU seconds of one photo's decode job, what a worker runs (read, hash, draft decode,
    resize, crop), in this process."""
    from indexer.decode import DecodeJob, content_hash, run_decode_job
    from search.config import IndexerConfig

    cfg = IndexerConfig()
    jobs = [DecodeJob(str(p), content_hash(str(p)), spec, cfg.max_image_pixels, cfg.jpeg_draft)
            for p in photos]
    for job in jobs[:2]:
        run_decode_job(job)  # warm-up
    t0 = time.process_time()
    for job in jobs:
        run_decode_job(job)
    return (time.process_time() - t0) / len(jobs)


if __name__ == "__main__":
    raise SystemExit(main())
