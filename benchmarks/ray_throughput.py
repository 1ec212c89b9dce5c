"""Indexing on Ray against indexing in process, on the same machine and photos.

One run indexes the same folder of sub-megapixel camera JPEGs (``benchmarks/photos.py``)
into fresh data dirs, in turn and in rounds:

- **in process**: ``pixseek index`` as usual (decode workers, the model in this process);
- **ray, N workers**: ``indexing with indexer.ray = local``: decode tasks and N encoding
  actors on a local Ray cluster, this process committing. The cluster is started once,
  before the clock (a real deployment keeps one running).

Images per second is ``encoded / seconds`` of the whole index run; the median over rounds
is reported. Results go to stdout (markdown) and ``bench-out/ray_throughput.{json,md}``.

    python benchmarks/ray_throughput.py                      # 96 photos, 1 and 2 workers
    python benchmarks/ray_throughput.py --count 32 --rounds 1 --model offline
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.photos import make_benchmark_photos  # noqa: E402
from indexer.pipeline import Indexer  # noqa: E402
from indexer.ray_encode import connect  # noqa: E402
from search.config import load_config  # noqa: E402
from search.encoders import load_encoder  # noqa: E402
from search.store import Store  # noqa: E402

DEFAULT_OUT = Path("bench-out")


def index_once(photos: Path, model: str, batch: int, ray_workers: int | None) -> float:
    """Images per second of one fresh index run."""
    with tempfile.TemporaryDirectory() as data:
        overrides = {"data_dir": data, "model.name": model, "model.batch_size": batch,
                     "model.device": "cpu", "model.precision": "fp32"}
        if ray_workers:
            overrides.update({"indexer.ray": "local", "indexer.ray_workers": ray_workers})
        config = load_config(overrides=overrides, environ={})
        encoder = load_encoder(config.model, cache_dir=config.data_path)
        with Store(config.db_url) as store:
            started = time.perf_counter()
            summary = Indexer(config, store, encoder, progress=False).index([str(photos)])
            seconds = time.perf_counter() - started
    return summary.encoded / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--long-side", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="Ray encoding actors to try.")
    parser.add_argument("--model", default="offline")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    photos = args.out / "photos" / f"{args.long_side}px"
    make_benchmark_photos(photos, args.count, args.long_side)
    connect("local")
    setups = [("in process", None)] + [
        (f"ray, {n} worker{'s' if n > 1 else ''}", n)
        for n in map(int, args.workers.split(","))]
    rates: dict[str, list[float]] = {name: [] for name, _ in setups}
    for _ in range(args.rounds):
        for name, workers in setups:
            rates[name].append(index_once(photos, args.model, args.batch_size, workers))
    base = statistics.median(rates["in process"])
    lines = [f"{args.count} photos, {args.long_side} px, model {args.model}, batch "
             f"{args.batch_size}, {os.cpu_count()} cores ({platform.processor() or 'cpu'}), "
             f"median of {args.rounds}", "",
             "| setup | images/s | vs in process |", "|---|--:|--:|"]
    for name, _ in setups:
        rate = statistics.median(rates[name])
        lines.append(f"| {name} | {rate:.1f} | {rate / base:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_throughput.md").write_text(table)
    (args.out / "ray_throughput.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "rates": rates}, indent=2))


if __name__ == "__main__":
    main()
