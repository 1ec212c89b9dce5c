"""Training throughput of ``pixseek finetune``: pairs per second and peak memory, per model.

Each model size runs in a process of its own (so one's peak memory cannot hide another's):
a randomly initialised CLIP of that size (``training.scratch``; random weights cost what
trained ones cost), real captions from a synthetic set, and the training step that
``finetune`` runs (``training.finetune.train_epoch``: forward through both towers, the
symmetric InfoNCE loss, backward, gradient clipping, fused AdamW, the scheduler), with
``--train all``. One warm-up step, then ``--steps`` timed steps.

- **pairs/s**: image-caption pairs trained per second.
- **peak RSS**: the process's peak resident memory (model, optimizer state, activations).
- **peak CUDA memory**: ``torch.cuda.max_memory_allocated`` on a GPU (fp16 autocast).

    python benchmarks/train_throughput.py                        # small and vit-b-32, batch 64
    python benchmarks/train_throughput.py --sizes tiny --steps 3 # a smoke run
    python benchmarks/train_throughput.py --device cuda          # on a GPU

Results go to stdout (a markdown table) and to ``bench-out/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OUT = Path("bench-out")


def measure(size: str, batch_size: int, steps: int, device: str) -> dict:
    """One size, in this process."""
    import numpy as np
    import torch

    from search.encoders.clip import ClipEncoder
    from search.evaluation.captions import load_caption_set
    from training import contrastive
    from training.data import Pairs
    from training.finetune import train_epoch
    from training.scratch import build_random_clip
    from training.synth import render_synth

    with tempfile.TemporaryDirectory() as tmp:
        captions = load_caption_set(render_synth(Path(tmp) / "synth", batch_size * 2), None)
        encoder = ClipEncoder(str(build_random_clip(Path(tmp) / "model", size)), device=device,
                              fp16=False)
    model = encoder.model
    h, w = encoder.spec.crop or encoder.spec.resize_to
    n = batch_size * (steps + 1)
    rng = np.random.default_rng(0)
    pairs = Pairs(
        rng.standard_normal((n, 3, h, w), dtype=np.float32).astype(np.float16),
        [captions.captions[i % captions.n_captions] for i in range(n)],
        np.arange(n),
    )
    trained = contrastive.prepare_trainable(model, "all")
    optimizer = contrastive.optimizer_for(trained, 1e-4)
    scheduler = contrastive.warmup_cosine(optimizer, steps + 1)
    scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda")
    batches = [np.arange(i * batch_size, (i + 1) * batch_size) for i in range(steps + 1)]

    def run(part: list) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_epoch(trained, model, encoder.tokenizer, pairs, optimizer, scheduler, scaler,
                    part, device, size)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    run(batches[:1])  # warm-up: allocations, kernel choice
    seconds = run(batches[1:])
    out = {
        "size": size,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "image_px": h,
        "batch_size": batch_size,
        "steps": steps,
        "pairs_per_s": round(steps * batch_size / seconds, 1),
        "seconds_per_step": round(seconds / steps, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,vit-b-32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: measure one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch_size, args.steps, args.device)))
        return

    rows = []
    for size in args.sizes.split(","):
        child = subprocess.run(
            [sys.executable, __file__, "--one", size, "--batch-size", str(args.batch_size),
             "--steps", str(args.steps), "--device", args.device],
            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if child.returncode != 0:
            sys.exit(f"{size} failed:\n{child.stderr[-2000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "results": rows}
    (args.out / "train_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    print("| size | params (M) | image px | batch | pairs/s | s/step | peak RSS (MB) |"
          + (" peak CUDA (MB) |" if args.device == "cuda" else ""))
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if args.device == "cuda" else ""))
    for r in rows:
        print(f"| {r['size']} | {r['parameters_m']} | {r['image_px']} | {r['batch_size']} | "
              f"{r['pairs_per_s']} | {r['seconds_per_step']} | {r['peak_rss_mb']} |"
              + (f" {r['peak_cuda_mb']} |" if args.device == "cuda" else ""))


if __name__ == "__main__":
    main()
