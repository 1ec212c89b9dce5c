"""``/api/search`` p50 per (runtime, precision): the text tower on each runtime.

Indexes ``--count`` sub-megapixel photos (``benchmarks/photos.py``) once with a randomly
initialised CLIP of ViT-B/32 shape, then, for each ``RUNTIME:PRECISION`` pair, opens the web
app on that index (``webui.create_app``, the Flask test client: no HTTP server, what a
request costs inside ``pixseek serve``) and sends ``--queries`` text searches, the pairs
interleaved query by query. Vectors of every faithful pair share the model's index, so one
index serves all of them. ``auto:auto`` measures its choice first (outside the clock).
Each query waits ``--pause`` seconds first (0.25, off the clock), as a person's queries come
seconds apart: without it, the threads the pair before left spinning (torch's OpenMP, ONNX
Runtime's pool) take the 2 cores from the next pair, which no ``serve`` of one pair meets.

    python benchmarks/search_latency.py
    python benchmarks/search_latency.py --pairs torch:fp32 onnxruntime:int8 auto:auto

Prints a markdown table and writes ``bench-out/search_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERIES = ["a dog on the beach", "red car", "people at a market", "snowy mountains at dusk",
           "a cup of coffee", "city street at night", "flowers in a garden", "a cat asleep",
           "astronaut", "the moon over the sea"]


def log(msg: str) -> None:
    print(f"[search_latency] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--pairs", nargs="+", default=["torch:fp32", "torch:auto", "auto:auto"])
    ap.add_argument("--pause", type=float, default=0.25,
                    help="seconds before each query, off the clock (0: back to back)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args(argv)

    import torch

    from benchmarks.photos import make_benchmark_photos
    from indexer.session import open_indexer
    from search.config import load_config
    from search.encoders.precision import cpu_name
    from search.engine import Engine
    from training.scratch import random_clip
    from webui import create_app

    photos = make_benchmark_photos(args.out / "photos" / "800px", count=args.count,
                                   long_side=800)
    model_dir = random_clip(args.out / "models" / "clip-vit-b-32-random", "vit-b-32")
    with tempfile.TemporaryDirectory(prefix="pixseek-latency-") as tmp:
        data = Path(tmp) / "data"
        empty = Path(tmp) / "empty.yaml"
        empty.write_text("{}\n")

        def config(pair: str):
            runtime, _, precision = pair.rpartition(":")
            return load_config(empty, environ={}, overrides={
                "data_dir": str(data), "model.name": str(model_dir), "model.device": "cpu",
                "model.precision": precision, "model.runtime": runtime or "torch",
                "ocr.enabled": False})

        with open_indexer(config("torch:fp32"), progress=False) as indexer:
            indexer.index([str(p.parent) for p in photos[:1]])
        clients, runs_as = {}, {}
        for pair in args.pairs:
            engine = Engine(config(pair))
            client = create_app(engine.config, engine).test_client()
            r = client.get("/api/search", query_string={"q": "warm up"})  # loads the model
            assert r.status_code == 200, r.get_data(as_text=True)
            rt = engine.runtime()
            runs_as[pair] = f"{rt['in_use']} {rt['precision'] or ''}".strip()
            clients[pair] = client
            log(f"{pair}: {runs_as[pair]} ({rt['reason'][:160]})")
        times: dict[str, list[float]] = {p: [] for p in args.pairs}
        for i in range(args.queries):
            q = QUERIES[i % len(QUERIES)] + f" {i}"  # never a cached answer
            for pair, client in clients.items():
                time.sleep(args.pause)
                t0 = time.perf_counter()
                r = client.get("/api/search", query_string={"q": q, "k": 20})
                times[pair].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.get_data(as_text=True)
    p50 = {p: statistics.median(v) for p, v in times.items()}
    lines = [f"/api/search, {args.count} photos, random ViT-B/32 CLIP, cpu, "
             f"{torch.get_num_threads()} threads, {args.queries} queries interleaved, "
             f"{args.pause} s apart", "",
             "| runtime:precision | runs as | p50 ms | p90 ms |", "|---|---|---:|---:|"]
    for p, v in times.items():
        p90 = sorted(v)[int(0.9 * (len(v) - 1))]
        lines.append(f"| {p} | {runs_as[p]} | {p50[p]:.1f} | {p90:.1f} |")
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_latency.json").write_text(json.dumps({
        "ms": times, "p50": p50, "runs_as": runs_as, "cpu": cpu_name(),
        "load_average": os.getloadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
