"""Indexing throughput: ``pixseek index`` against the bare model, per precision and photo size.

For each backend (``offline``, and a randomly initialised CLIP of ViT-B/32 shape that costs
what ``openai/clip-vit-base-patch32`` costs), each precision (``--precisions``; default:
every precision the device supports, plus ``auto`` resolved to what it picks) and each photo
size (``--sizes``: 12 MP camera JPEGs, 4000 x 3000, and sub-megapixel photos, 800 x 600), one
run measures, in images per second (``--ocr [--count N]`` instead measures what reading the
text in photos costs: ``benchmarks/ocr_throughput.py``):

- **bare model**: ``encoder.encode_pixels`` on tensors preprocessed beforehand, in batches
  of ``model.batch_size`` (the pipeline's), after a warm-up call on each batch shape. The
  most the model can do here.
- **pipeline**: a full ``Indexer.index`` of the photo folder, what ``pixseek index`` runs
  (scan, hash, decode in worker processes, encode, one SQLite transaction per batch in a
  writer thread, FAISS save), into a fresh data dir so nothing is reused;
  ``encoded / seconds``. Default settings: ``indexer.decode_workers=auto``,
  ``indexer.jpeg_draft=true``. The model is loaded before the clock starts; the worker
  pool's start is inside it, as it is for a user.
- **decode only**: the decode workers' job (read, verify hash, JPEG draft decode, EXIF
  transpose, resize, crop, normalise) for every photo, one process, no model (one figure per
  backend and size: it does not depend on the precision).
- **CPU ceiling** (CPU device only): ``1 / (1/bare + 1/(cores * decode))``, the best a
  pipeline can do when decoding and the model share the same cores perfectly.
- **pipeline / ceiling**: the figure that matters on a CPU (pipeline / bare on a GPU, where
  decoding has its own cores).
- with ``--inproc``, **pipeline, in-process decode**: the same with
  ``indexer.decode_workers=0``.
- with ``--workers N``, **pipeline, N workers**: the same with ``indexer.decode_workers=N``,
  side by side with auto's count (how auto's count was chosen).

The photos are camera-size JPEGs made from real photographs shipped in installed packages
(``benchmarks/photos.py``), cached in ``bench-out/photos/<long side>px``.
Results go to stdout (markdown tables, one per size) and to
``bench-out/index_throughput.{json,md}``. With ``--repeats N`` the measurements are
interleaved (every figure once per round) and the median is reported. Each sample records
the CPU share other processes took meanwhile; a sample taken on a busy machine is left out
when a quiet one of the same figure exists. ``auto``'s choice is cached in
``bench-out/models/precision.json`` (its first use measures, once per machine).

    python benchmarks/index_throughput.py                   # 240 photos per size
    python benchmarks/index_throughput.py --quick           # smoke run: 16 per size, fp32
    python benchmarks/index_throughput.py --backends clip-b32 --precisions fp32,int8,auto
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BACKENDS = ("offline", "clip-b32")
DEFAULT_OUT = Path("bench-out")
# Photo sizes by name: long side in px (the photos are 4:3 or 3:4 crops, some other aspects).
SIZES = {"12mp": 4000, "sub-mp": 800}
FULL = {"count": 240}
QUICK = {"count": 16, "precisions": "fp32"}
METRICS = ("decode", "bare", "pipeline", "pipeline_inproc", "pipeline_workers")
# A sample taken while other processes used more than this share of the CPU is left out of
# the statistic when a quieter sample of the same figure exists (all are kept in the JSON).
BUSY = 0.05


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class CpuWatch:
    """CPU seconds that other processes used meanwhile: other work on the machine skews
    every figure here, so each measurement records how much there was."""

    def __init__(self) -> None:
        self.total = self._busy()
        self.own = self._own()
        self.wall = time.perf_counter()

    @staticmethod
    def _busy() -> float | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        except OSError:
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()  # children: the decode workers, once the pool has joined them
        return t.user + t.system + t.children_user + t.children_system

    def other_share(self, cpus: int) -> float | None:
        """Other processes' CPU use as a share of this machine's CPU time since start."""
        busy = self._busy()
        if busy is None or self.total is None:
            return None
        other = (busy - self.total) - (self._own() - self.own)
        wall = time.perf_counter() - self.wall
        return max(0.0, other) / (wall * cpus) if wall > 0 else None


# -- inputs ------------------------------------------------------------------------------


def prepare_photos(photos_dir: Path, count: int, long_side: int, staging: Path) -> Path:
    """A folder that holds exactly the ``count`` benchmark photos (hard links to the cache)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.photos import make_benchmark_photos

    started = time.perf_counter()
    paths = make_benchmark_photos(photos_dir, count=count, long_side=long_side)
    took = time.perf_counter() - started
    if took > 2:
        log(f"made {len(paths)} benchmark photos in {photos_dir} ({took:.0f} s)")
    if len(paths) != count:
        raise SystemExit(f"expected {count} benchmark photos, got {len(paths)}")
    # The cache folder may hold more photos (an earlier, larger --count): index a folder
    # of exactly these, linked (or copied across file systems).
    staging.mkdir(parents=True)
    for path in paths:
        target = staging / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    return staging


def load_backend(name: str, device: str, models_dir: Path, precision: str = "fp32"):
    """The backend at ``precision``; ``auto`` caches its choice in ``models_dir``."""
    from search.encoders import load_encoder

    if name == "offline":  # fp32 always; ``RUNTIME:fp32`` runs its classifier on RUNTIME
        return load_encoder("offline", device=device, runtime=precision.rpartition(":")[0] or None)
    if name == "clip-b32":
        from training.scratch import random_clip

        folder = random_clip(models_dir / "clip-vit-b-32-random", "vit-b-32")
        runtime, _, precision = precision.rpartition(":")  # RUNTIME:PRECISION (model.runtime)
        return load_encoder(str(folder), device=device, precision=precision, cache_dir=models_dir,
                            runtime=runtime or "torch")
    raise SystemExit(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def load_cases(args, device: str) -> list[Case]:
    """One case per backend and precision; ``auto`` marks the case of the precision it picks
    (adding it when it is not among the others)."""
    cases: list[Case] = []
    for name in args.backends:
        autos = [p for p in args.precisions if p in ("auto", "auto:auto")]
        wanted = ([p for p in args.precisions if p.endswith("fp32")] or ["fp32"]
                  if name == "offline" else [p for p in args.precisions if p not in autos])
        picks = set()
        for which in autos if name != "offline" else []:
            started = time.perf_counter()
            auto = load_backend(name, device, args.out / "models", which)
            runtime = getattr(auto, "runtime", "torch")
            pick = auto.precision if runtime == "torch" else f"{runtime}:{auto.precision}"
            picks.add(pick)
            log(f"{name}: {which} picks {pick} ({time.perf_counter() - started:.1f} s to load; "
                f"{auto.precision_reason})")
            if pick not in wanted:
                wanted.append(pick)
            del auto
        for precision in wanted:
            started = time.perf_counter()
            enc = load_backend(name, device, args.out / "models", precision)
            log(f"loaded {name} ({enc.model_id}) at {enc.precision} on {enc.device} "
                f"in {time.perf_counter() - started:.1f} s")
            cases.append(Case(name, precision, enc, auto=precision in picks))
    return cases


def make_config(data_dir: Path, empty_yaml: Path, model: str, batch_size: int, workers):
    """The built-in defaults (not ./config.yaml, not PIXSEEK_ variables) plus these keys."""
    from search.config import load_config

    return load_config(
        empty_yaml,
        overrides={
            "data_dir": str(data_dir),
            "model.name": model,
            "model.batch_size": batch_size,
            "indexer.decode_workers": workers,
            # The CLIP pass alone: with the ocr extra installed, OCR would run after it in
            # the same index (its cost: --ocr, benchmarks/ocr_throughput.py).
            "ocr.enabled": False,
        },
        environ={},
    )


# -- measurements ------------------------------------------------------------------------


def measure_decode(paths: list[Path], hashes: list[str], spec, max_pixels: int, draft: bool):
    """Images/s of the decode worker's job in this process, and the tensors it made."""
    from indexer.decode import DecodeJob, run_decode_job

    pixels = []
    started = time.perf_counter()
    for path, digest in zip(paths, hashes, strict=True):
        result = run_decode_job(DecodeJob(str(path), digest, spec, max_pixels, draft))
        if isinstance(result, str):
            raise SystemExit(f"{path}: {result}")
        pixels.append(result.pixels)
    seconds = time.perf_counter() - started
    return len(paths) / seconds, pixels


def measure_bare(encoder, pixels: list, batch_size: int) -> float:
    """Images/s of ``encode_pixels`` alone, batches stacked before the clock starts."""
    import numpy as np

    batches = [np.stack(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)]
    # Warm-up (allocator, kernels, lazy init) on each batch shape, as the pipeline runs
    # after this and finds them warm too.
    for warm_up in {b.shape: b for b in (batches[0], batches[-1])}.values():
        encoder.encode_pixels(warm_up)
    started = time.perf_counter()
    for batch in batches:
        encoder.encode_pixels(batch)  # returns numpy: a GPU run is synchronised
    seconds = time.perf_counter() - started
    return len(pixels) / seconds


def measure_pipeline(
    encoder, folder: Path, expected: int, tmp_root: Path, empty_yaml: Path,
    batch_size: int, workers,
) -> tuple[float, dict]:
    """Images/s of a full index of ``folder`` into a fresh data dir."""
    from indexer.pipeline import Indexer
    from search.store import Store

    with tempfile.TemporaryDirectory(prefix="data-", dir=tmp_root) as data_dir:
        config = make_config(Path(data_dir), empty_yaml, encoder.model_id, batch_size, workers)
        store = Store(config.db_url)  # schema creation is not indexing: before the clock
        try:
            summary = Indexer(config, store, encoder, progress=False).index([folder])
        finally:
            store.close()
    if summary.encoded != expected or summary.failed or summary.reused:
        raise SystemExit(f"pipeline run did not encode every photo once: {summary.as_dict()}")
    return summary.encoded / summary.seconds, {
        "encoded": summary.encoded,
        "seconds": summary.seconds,
        "decode_workers": config.indexer.worker_count(encoder.device),
    }


# -- the run -----------------------------------------------------------------------------


@dataclass
class Figures:
    """Every sample of every metric of one case at one photo size, with the CPU share other
    processes took meanwhile."""

    samples: dict[str, list[tuple[float, float | None]]] = field(
        default_factory=lambda: {m: [] for m in METRICS}
    )
    runs: list[dict] = field(default_factory=list)

    def record(
        self, tag: str, metric: str, rate: float, share: float | None, note: str = ""
    ) -> None:
        self.samples[metric].append((rate, share))
        busy = f" (other processes used {share:.0%} of the CPU)" if share is not None else ""
        log(f"{tag}: {metric}{note} {rate:.1f} img/s{busy}")

    def clean(self, metric: str) -> list[float]:
        """The samples taken on a quiet machine, or all of them when none was."""
        quiet = [r for r, share in self.samples[metric] if share is None or share <= BUSY]
        return quiet or [r for r, _ in self.samples[metric]]

    def value(self, metric: str) -> float | None:
        used = self.clean(metric)
        return statistics.median(used) if used else None

    def summary(self, cpus: int, device: str) -> dict:
        out: dict = {}
        for metric in METRICS:
            if not self.samples[metric]:
                continue
            rates = [r for r, _ in self.samples[metric]]
            shares = [s for _, s in self.samples[metric]]
            used = self.clean(metric)
            out[metric] = {
                "median": round(statistics.median(used), 2),
                "min": round(min(used), 2),
                "max": round(max(used), 2),
                "samples": [round(r, 2) for r in rates],
                "other_cpu_share": [None if s is None else round(s, 3) for s in shares],
                "samples_used": len(used),
                "skewed": all(s is not None and s > BUSY for s in shares),
            }
        bare, pipeline = self.value("bare"), self.value("pipeline")
        out["ratio"] = round(pipeline / bare, 3)
        if self.samples["pipeline_inproc"]:
            out["ratio_inproc"] = round(self.value("pipeline_inproc") / bare, 3)
        if self.samples["pipeline_workers"]:
            out["ratio_workers"] = round(self.value("pipeline_workers") / pipeline, 3)
        out["cpu_ceiling"] = out["ratio_to_ceiling"] = None
        if device == "cpu":
            ceiling = 1 / (1 / bare + 1 / (cpus * self.value("decode")))
            out["cpu_ceiling"] = round(ceiling, 2)
            out["ratio_to_ceiling"] = round(pipeline / ceiling, 3)
        out["pipeline_runs"] = self.runs
        return out


@dataclass
class Case:
    """One backend at one precision; its figures per photo size."""

    backend: str
    precision: str
    encoder: object
    auto: bool = False  # the precision auto picks
    sizes: dict[str, Figures] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (" (auto)" if self.auto else "")

    def at(self, size: str) -> Figures:
        return self.sizes.setdefault(size, Figures())


def machine_facts(device_of: dict[str, str]) -> dict:
    import numpy
    import PIL
    import torch

    from search.encoders.precision import cpu_name

    cpu_model = cpu_name()
    facts = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "devices": device_of,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }
    try:
        import transformers

        facts["transformers"] = transformers.__version__
    except ImportError:
        pass
    return facts


def markdown(results: list[dict], meta: dict) -> str:
    s, m = meta["settings"], meta["machine"]
    stat = "median" if s["repeats"] > 1 else "one run"
    inproc = any("pipeline_inproc" in r for r in results)
    other = s.get("other_workers")
    lines = [
        f"Indexing throughput, images/s ({stat} of {s['repeats']}), {s['count']} JPEGs per "
        f"size, batch {s['batch_size']}, {m['cpus_usable'] or m['cpu_count']} CPUs "
        f"({m['cpu_model']}), torch {m['torch_version']} with {m['torch_threads']} threads, "
        f"{meta['date']}.",
    ]
    for size, long_side in s["sizes"].items():
        rows = [r for r in results if r["size"] == size]
        workers = {r["pipeline_runs"][0]["decode_workers"] for r in rows}
        lines += [
            "",
            f"**{size}** ({long_side} px long side):",
            "",
            "| backend | precision | bare model | pipeline (workers "
            f"{'/'.join(str(w) for w in sorted(workers))}) | pipeline / bare | CPU ceiling | "
            "**pipeline / ceiling** | decode only (1 process)"
            + (" | pipeline, workers=0" if inproc else "")
            + (f" | pipeline, workers={other} (ratio to auto's)" if other is not None else "")
            + " |",
            "|---|---|--:|--:|--:|--:|--:|--:|" + ("--:|" if inproc else "")
            + ("--:|" if other is not None else ""),
        ]
        for r in rows:
            ceiling = f"{r['cpu_ceiling']:.1f}" if r["cpu_ceiling"] is not None else "n/a"
            to_ceiling = (f"**{r['ratio_to_ceiling']:.2f}**"
                          if r["ratio_to_ceiling"] is not None else "n/a")
            precision = r["precision"] + (" (auto)" if r["auto"] else "")
            row = (
                f"| {r['backend']} | {precision} | {r['bare']['median']:.1f} | "
                f"{r['pipeline']['median']:.1f} | {r['ratio']:.2f} | {ceiling} | "
                f"{to_ceiling} | {r['decode']['median']:.1f} |"
            )
            if inproc:
                row += f" {r['pipeline_inproc']['median']:.1f} |"
            if other is not None:
                row += f" {r['pipeline_workers']['median']:.1f} ({r['ratio_workers']:.2f}) |"
            lines.append(row)
    figures = [r[k] for r in results for k in METRICS if k in r]
    dropped = sum(len(f["samples"]) - f["samples_used"] for f in figures)
    shares = [x for f in figures for x in f["other_cpu_share"] if x is not None]
    if any(f["skewed"] for f in figures):
        lines += ["", f"**Skewed:** other processes used over {BUSY:.0%} of the CPU during "
                  "every sample of some figure (up to "
                  f"{max(shares):.0%}); compare ratios measured side by side, or rerun on a "
                  "quiet machine."]
    elif dropped:
        lines += ["", f"{dropped} sample(s) taken while other processes used over {BUSY:.0%} "
                  "of the CPU were left out (kept in the JSON)."]
    elif shares:
        lines += ["", f"Other processes used at most {max(shares):.1%} of the CPU during "
                  "any sample."]
    lines += [
        "",
        "bare model: encode_pixels on preprocessed tensors. pipeline: a full `pixseek index` "
        "(Indexer.index) into a fresh data dir, encoded / seconds. decode only: read + hash "
        "check + JPEG draft decode + preprocess, no model. CPU ceiling: "
        "1 / (1/bare + 1/(cores x decode)), the pipeline's limit when decode and model share "
        "the cores.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help=f"comma-separated, from {', '.join(BACKENDS)} (default: all)")
    p.add_argument("--precisions",
                   help="comma-separated, from fp32, bf16, fp16, int8, auto (default: every "
                   "one the device supports, and auto; --quick: fp32), or RUNTIME:PRECISION "
                   "pairs (onnxruntime:int8, openvino:int8-static, auto:auto). The offline "
                   "model runs in fp32 only: its RUNTIME:fp32 pairs (onnxruntime:fp32)")
    p.add_argument("--sizes", default=",".join(SIZES),
                   help=f"photo sizes, from {', '.join(SIZES)} (default: both)")
    p.add_argument("--long-side", type=int,
                   help="one custom photo size instead of --sizes, long side in px")
    p.add_argument("--photos", type=Path,
                   help="photo cache folder (default: bench-out/photos/<long side>px); "
                   "only with one size")
    p.add_argument("--count", type=int, help=f"photos per size (default {FULL['count']})")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure every figure this many times, interleaved; report the median")
    p.add_argument("--inproc", action="store_true",
                   help="also time the pipeline with decode_workers=0")
    p.add_argument("--workers", type=int,
                   help="also time the pipeline with decode_workers=N, side by side")
    p.add_argument("--batch-size", type=int, help="model.batch_size (default: the config's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="where results and caches go (default bench-out)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK['count']} photos per size, fp32 only")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.count = preset["count"] if args.count is None else args.count
    if args.precisions is None and args.quick:
        args.precisions = QUICK["precisions"]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown or not args.backends:
        p.error(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")
    if args.long_side is not None:
        args.sizes = {f"{args.long_side}px": args.long_side}
    else:
        names = [n.strip() for n in args.sizes.split(",") if n.strip()]
        if not names or any(n not in SIZES for n in names):
            p.error(f"--sizes: choose from {', '.join(SIZES)}")
        args.sizes = {n: SIZES[n] for n in names}
    if args.photos is not None and len(args.sizes) != 1:
        p.error("--photos needs one size (--sizes NAME or --long-side PX)")
    if args.precisions is not None:
        args.precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
        bad = [x for x in args.precisions if x.rpartition(":")[2] not in (
            "auto", "fp32", "bf16", "fp16", "int8", "int8-static") or x.rpartition(":")[0] not in (
            "", "auto", "torch", "onnxruntime", "openvino")]
        if bad or not args.precisions:
            p.error(f"--precisions: unknown {bad}; choose from fp32, bf16, fp16, int8, auto, "
                    "or RUNTIME:PRECISION (onnxruntime:int8, openvino:int8-static, auto:auto)")
    if args.count < 1 or args.repeats < 1:
        p.error("--count and --repeats must be at least 1")
    if args.workers is not None and args.workers < 0:
        p.error("--workers must be 0 or more")
    return args


def measure_size(
    cases: list[Case], size: str, folder: Path, rep: int, args, tmp_root: Path,
    empty_yaml: Path, batch_size: int, cpus: int, max_pixels: int, draft: bool,
) -> None:
    """One round at one photo size: decode once per backend, then every precision's bare
    model and pipeline runs."""
    from indexer.decode import content_hash

    paths = sorted(folder.iterdir())
    hashes = [content_hash(str(p)) for p in paths]  # also warms the page cache
    modes = [("pipeline", "auto")] + ([("pipeline_inproc", 0)] if args.inproc else [])
    modes += [("pipeline_workers", args.workers)] if args.workers is not None else []
    for backend in dict.fromkeys(c.backend for c in cases):
        mine = [c for c in cases if c.backend == backend]
        gc.collect()
        watch = CpuWatch()
        rate, pixels = measure_decode(paths, hashes, mine[0].encoder.spec, max_pixels, draft)
        share = watch.other_share(cpus)
        mine[0].at(size).record(f"[{rep + 1}/{args.repeats}] {backend} {size}", "decode",
                                rate, share)
        for c in mine[1:]:  # decoding does not depend on the precision: one figure for all
            c.at(size).samples["decode"].append((rate, share))
        for c in mine:
            tag = f"[{rep + 1}/{args.repeats}] {c.label} {size}"
            watch = CpuWatch()
            c.at(size).record(tag, "bare", measure_bare(c.encoder, pixels, batch_size),
                              watch.other_share(cpus))
        del pixels
        gc.collect()
        for c in mine if rep % 2 == 0 else mine[::-1]:  # alternate the order between rounds
            tag = f"[{rep + 1}/{args.repeats}] {c.label} {size}"
            for metric, workers in modes if rep % 2 == 0 else modes[::-1]:
                watch = CpuWatch()
                rate, run = measure_pipeline(
                    c.encoder, folder, len(paths), tmp_root, empty_yaml, batch_size, workers
                )
                c.at(size).record(tag, metric, rate, watch.other_share(cpus),
                                  f" (decode_workers={run['decode_workers']})")
                c.at(size).runs.append({"metric": metric, "repeat": rep, **run})


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--ocr" in argv:  # what reading the text in photos costs: benchmarks/ocr_throughput.py
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from benchmarks.ocr_throughput import main as ocr_main

        return ocr_main([a for a in argv if a != "--ocr"])
    args = parse_args(argv)
    wall = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from search.config import Config
    from search.encoders.base import pick_device
    from search.encoders.precision import supported

    device = pick_device(args.device)
    if args.precisions is None:
        args.precisions = [*supported(device), "auto"]
    defaults = Config()
    batch_size = args.batch_size or defaults.model.batch_for(device)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    with tempfile.TemporaryDirectory(prefix="index-throughput-", dir=out) as tmp:
        tmp_root = Path(tmp)
        empty_yaml = tmp_root / "empty.yaml"
        empty_yaml.write_text("")
        folders = {
            size: prepare_photos(args.photos or out / "photos" / f"{long_side}px", args.count,
                                 long_side, tmp_root / f"photos-{size}")
            for size, long_side in args.sizes.items()
        }
        cases = load_cases(args, device)
        for rep in range(args.repeats):
            for size, folder in folders.items():
                measure_size(cases, size, folder, rep, args, tmp_root, empty_yaml, batch_size,
                             cpus, defaults.indexer.max_image_pixels, defaults.indexer.jpeg_draft)

    meta = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_facts({c.label: c.encoder.device for c in cases}),
        "settings": {
            "count": args.count,
            "sizes": args.sizes,
            "precisions": args.precisions,
            "batch_size": batch_size,
            "repeats": args.repeats,
            "statistic": f"median of the samples taken with other processes under {BUSY:.0%} "
            "of the CPU (all samples when none was)",
            "decode_workers": "auto (pipeline)" + (" / 0 (pipeline_inproc)" if args.inproc
                                                   else "")
            + (f" / {args.workers} (pipeline_workers)" if args.workers is not None else ""),
            "other_workers": args.workers,
            "jpeg_draft": defaults.indexer.jpeg_draft,
        },
    }
    results = [
        {"backend": c.backend, "precision": c.precision, "auto": c.auto, "size": size,
         "model_id": c.encoder.model_id, "device": c.encoder.device,
         **figures.summary(cpus, c.encoder.device)}
        for size in args.sizes for c in cases for s_, figures in c.sizes.items() if s_ == size
    ]
    meta["seconds"] = round(time.perf_counter() - wall, 1)
    table = markdown(results, meta)
    (out / "index_throughput.json").write_text(
        json.dumps({**meta, "results": results}, indent=2) + "\n"
    )
    (out / "index_throughput.md").write_text(table)
    print(table, end="")
    log(f"wrote {out / 'index_throughput.json'} and {out / 'index_throughput.md'} "
        f"({meta['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
