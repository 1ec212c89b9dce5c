"""Run time and peak memory of ``pixseek bench retrieval`` at 1k images x 5k captions.

Builds a captioned set from the real sample photos (varied crops and flips, see
``benchmarks/photos.py``; each image gets its source photo's three captions
plus two rephrasings), then runs the real command twice in a fresh data directory: cold
(every image decoded and encoded) and warm (vectors reused from the bench store). Peak memory
is the largest sum of RSS over the command's process tree (main process + decode workers),
sampled every 50 ms. Recall figures on this set mean little (crops of 37 photos); it measures
cost, not quality.

    python benchmarks/retrieval_scale.py [--images 1000] [--model offline]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.photos import make_benchmark_photos  # noqa: E402
from search.samples import sample_photos  # noqa: E402

REPHRASE = ("a picture of {}", "{}, seen in a photo")


def build_set(folder: Path, count: int, long_side: int) -> Path:
    captions = {p.name: p.captions for p in sample_photos()}
    photos = make_benchmark_photos(folder, count=count, long_side=long_side)
    out = folder / "captions.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "caption"])
        for path in photos:
            source = re.sub(r"^bench_\d+_", "", path.stem)
            caps = captions[source]
            rows = [*caps, REPHRASE[0].format(caps[0]), REPHRASE[1].format(caps[1])]
            for caption in rows:
                writer.writerow([path.name, caption])
    return out


def run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS of the process tree in bytes, stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    top = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [top, *top.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{err}")
    return time.perf_counter() - started, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--long-side", type=int, default=1024)
    ap.add_argument("--model", default="offline")
    ap.add_argument("--set-dir", type=Path, default=ROOT / "bench-out" / "retrieval-scale")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args()

    t0 = time.perf_counter()
    captions = build_set(args.set_dir, args.images, args.long_side)
    print(f"set ready in {time.perf_counter() - t0:.0f}s: {captions}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as data:
        for label in ("cold", "warm"):
            cmd = [
                sys.executable, "-m", "pixseek", "--data-dir", data, "bench", "retrieval",
                "--captions", str(captions), "--images", str(args.set_dir),
                "--model", args.model, "--json", str(Path(data) / f"{label}.json"),
            ]
            seconds, peak, _ = run_measured(cmd)
            res = json.loads((Path(data) / f"{label}.json").read_text())
            m = res["models"][args.model]
            rows.append({
                "run": label, "images": res["n_images"], "captions": res["n_captions"],
                "encoded": m["images_encoded"], "seconds": round(seconds, 1),
                "peak_rss_mib": round(peak / 2**20), "t2i_R@1": m["text_to_image"]["R@1"],
            })
    lines = [
        "| run | images | captions | encoded | seconds | peak RSS (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['run']} | {r['images']} | {r['captions']} | {r['encoded']} | "
            f"{r['seconds']} | {r['peak_rss_mib']} |"
            for r in rows
        ),
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval_scale.md").write_text(table)
    facts = {"model": args.model, "long_side": args.long_side, "cpus": psutil.cpu_count()}
    (args.out / "retrieval_scale.json").write_text(json.dumps({**facts, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
