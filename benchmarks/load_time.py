"""How long a new process takes to load the model, per ``RUNTIME:PRECISION`` pair.

What a user waits for at every ``pixseek search --local``, ``index`` or ``serve`` start:
a fresh Python process imports pixseek, loads a randomly initialised CLIP of ViT-B/32 shape
through ``load_encoder`` (exports already cached: each pair is loaded once, untimed, before
the rounds) and encodes one text query. Each round runs every pair once, in turn. Reports
the medians of the whole process, of ``load_encoder`` and of the first query, the process's
peak resident memory, and whether it imported torch.

    python benchmarks/load_time.py                                   # 3 rounds
    python benchmarks/load_time.py --rounds 5 --pairs torch:fp32 openvino:int8-static
    python benchmarks/load_time.py --against ../old-checkout    # the same pairs on older code

Prints a markdown table and writes ``bench-out/load_time.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, time
def peak_rss_mb():  # VmHWM: this program's own peak (ru_maxrss keeps the forking parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from search.encoders import load_encoder
imported = time.perf_counter()
enc = load_encoder({model!r}, device="cpu", precision={precision!r}, runtime={runtime!r})
loaded = time.perf_counter()
enc.encode_texts(["a red bike in the snow"])
print(json.dumps({{"import": imported - t0, "load": loaded - imported,
                  "first_query": time.perf_counter() - loaded,
                  "peak_rss_mb": peak_rss_mb(),
                  "torch": "torch" in sys.modules}}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", nargs="+",
                    default=["torch:fp32", "torch:int8", "onnxruntime:int8",
                             "openvino:int8-static"])
    ap.add_argument("--against", type=Path,
                    help="another checkout: each pair also loads with its code, in the same rounds")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args(argv)
    roots = {"": ROOT} | ({" (against)": args.against.resolve()} if args.against else {})
    cases = [(p + tag, p, root) for p in args.pairs for tag, root in roots.items()]

    from training.scratch import random_clip

    model_dir = random_clip(args.out / "models" / "clip-vit-b-32-random", "vit-b-32")

    def run(pair: str, root: Path) -> dict:
        runtime, _, precision = pair.rpartition(":")
        code = CHILD.format(root=str(root), model=str(model_dir), precision=precision,
                            runtime=runtime or "torch")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{pair} failed:\n{proc.stderr[-2000:]}")
        return {"process": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}

    for label, pair, root in cases:  # exports and calibration, once, off the clock
        print(f"[load_time] preparing {label}", file=sys.stderr, flush=True)
        run(pair, root)
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in cases}
    for rnd in range(args.rounds):
        for label, pair, root in cases:
            runs[label].append(run(pair, root))
        print(f"[load_time] round {rnd + 1}/{args.rounds}", file=sys.stderr, flush=True)

    def med(pair: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[pair])

    lines = [
        f"new process, random ViT-B/32 CLIP, exports cached, {args.rounds} rounds interleaved "
        f"(median), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        "",
        "| runtime:precision | whole process (s) | imports (s) | load_encoder (s) "
        "| first query (ms) | peak RSS (MB) | torch imported |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for pair in runs:
        rss = statistics.median(r.get("peak_rss_mb", float("nan")) for r in runs[pair])
        torch = "yes" if any(r.get("torch", True) for r in runs[pair]) else "no"
        lines.append(f"| {pair} | {med(pair, 'process'):.2f} | {med(pair, 'import'):.2f} | "
                     f"{med(pair, 'load'):.2f} | {1000 * med(pair, 'first_query'):.0f} | "
                     f"{rss:.0f} | {torch} |")
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load_time.json").write_text(json.dumps({"runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
