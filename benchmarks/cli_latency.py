"""Wall time of a shell ``pixseek search``: through a running ``pixseek serve``, in process,
and the same in-process search from another checkout (``--baseline``, e.g. main before a
change), side by side; and of ``pixseek status``, here and in the baseline.

It builds a small library offline (the sample photos, the offline model), starts ``serve``
for it, then times ``pixseek search "a cat"`` as a shell runs it (a new Python process each
time, no ``--model``: the library's own) round-robin between the variants, so a busy machine
slows them alike; reports the median of ``--runs`` each.

    python benchmarks/cli_latency.py --baseline /work/main          # 5 runs each
    python benchmarks/cli_latency.py --runs 3

Prints a markdown table and writes ``bench-out/cli_latency.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))


def pixseek(root: Path, data: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "PIXSEEK_OCR_ENABLED": "false"}
    # cwd outside any checkout: python -m puts the cwd before PYTHONPATH on sys.path.
    return subprocess.run([sys.executable, "-m", "pixseek", "--data-dir", str(data), *args],
                          capture_output=True, text=True, env=env, check=True,
                          cwd=data.parent, **kw)


def timed(root: Path, data: Path, *args: str) -> float:
    started = time.perf_counter()
    pixseek(root, data, *args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path,
                        help="Another checkout to time in process beside this one.")
    parser.add_argument("--out", type=Path, default=HERE / "bench-out")
    args = parser.parse_args()

    from search.samples import copy_sample_photos, sample_photos

    work = Path(tempfile.mkdtemp(prefix="pixseek-cli-latency-"))
    photos, data = work / "photos", work / "data"
    copy_sample_photos(photos, [p for p in sample_photos() if "/usr/share" not in str(p.path)])
    pixseek(HERE, data, "--model", "offline", "index", str(photos))
    query = ["search", "a cat", "-k", "5"]
    variants: dict[str, tuple[Path, Path, list[str]]] = {
        "this checkout, serve running": (HERE, data, [*query]),
        "this checkout, in process (--local)": (HERE, data, [*query, "--local"]),
        "this checkout, status (--local)": (HERE, data, ["status", "--local"]),
    }
    if args.baseline:
        # An older checkout knows neither the library's model nor --local, and may not open
        # a database a newer one migrated: it gets its own copy of the library.
        base_root, base_data = args.baseline.resolve(), work / "baseline-data"
        pixseek(base_root, base_data, "--model", "offline", "index", str(photos))
        variants["baseline, in process"] = (base_root, base_data, ["--model", "offline", *query])
        variants["baseline, status"] = (base_root, base_data, ["--model", "offline", "status"])
    env = {**os.environ, "PYTHONPATH": str(HERE), "PIXSEEK_OCR_ENABLED": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "pixseek", "--data-dir", str(data), "serve", "--port", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (data / "serve.json").exists():
            if server.poll() is not None:
                raise SystemExit("serve did not start")
            time.sleep(0.2)
        timed(HERE, data, *query)  # the server's first search (it may still be warming up)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, (root, where, argv) in variants.items():
                times[name].append(timed(root, where, *argv))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    rows = ["| variant | median wall s | runs (s) |", "|---|---:|---|"]
    for name, ts in times.items():
        rows.append(f"| {name} | {medians[name]:.2f} | {', '.join(f'{t:.2f}' for t in ts)} |")
    base = medians.get("baseline, in process")
    if base:
        local = medians["this checkout, in process (--local)"]
        status = medians["this checkout, status (--local)"] / medians["baseline, status"]
        rows.append(f"\nin process / baseline: {local / base:.2f}; "
                    f"served / baseline: {medians['this checkout, serve running'] / base:.2f}; "
                    f"status / baseline's: {status:.2f}")
    table = "\n".join(rows)
    print(table)
    args.out.mkdir(exist_ok=True)
    result = {"runs": args.runs, "cpus": os.cpu_count(), "load": os.getloadavg(),
              "times": times, "medians": medians, "query": query}
    (args.out / "cli_latency.json").write_text(json.dumps(result, indent=2))
    (args.out / "cli_latency.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
