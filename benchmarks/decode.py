"""What one decode worker costs per image, where the time goes, and how faithful each way is.

On camera-size JPEGs (``--long-side`` 4000 px, 12 MP) and on sub-megapixel ones
(``--small-long-side`` 800 px, 0.5 MP), both made from the real sample photos by
``benchmarks/photos.py``, in one process (per core), every way of turning the bytes into the
model's pixels is timed stage by stage:

- read: the file's bytes (from the OS cache: the files are read once before);
- open+EXIF: the header parse (size, the decompression-bomb check), capture time and camera,
  and the EXIF orientation applied;
- decode: the JPEG decoder, into a Pillow image;
- resize: the processor's bicubic resize of the shortest side to 224 px;
- crop+normalise: centre crop to 224 x 224, rescale, mean/std (float32 [3, 224, 224]).

Fidelity is the mean (and max) absolute difference of the final tensor against
transformers' ``CLIPImageProcessor`` (the PIL one) on the full-resolution, EXIF-rotated
decode: what the checkpoint's own processor makes. The indexer's bound is a mean of 0.03 on
camera photos (tests/search/test_preprocess.py).

Methods are interleaved per image and round, so a busy machine slows them all alike; the
reported time is the median over rounds of the mean per image. PyTurboJPEG needs the system
libturbojpeg; without it, its rows say why they are missing.

    python benchmarks/decode.py                     # 24 + 24 photos, 3 rounds
    python benchmarks/decode.py --count 8 --rounds 1

Prints a markdown table and writes ``bench-out/decode.json`` and ``bench-out/decode.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search import preprocess as pp  # noqa: E402

STAGES = ("read", "open+EXIF", "decode", "resize", "crop+normalise")
SPEC = pp.PreprocessSpec()  # CLIP's processor: 224 px shortest side, 224 crop, bicubic
TRANSPOSE = {  # EXIF orientation -> the transpose that displays it (as ImageOps does)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def log(msg: str) -> None:
    print(f"[decode] {msg}", file=sys.stderr, flush=True)


class Clock:
    """Seconds per stage, lapped in order."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - self.t
        self.t = now


def _finish(img: Image.Image, clock: Clock, reducing_gap: float | None = None,
            box: tuple | None = None, full_size: tuple[int, int] | None = None) -> np.ndarray:
    """resize (over ``box`` of a draft, sized by the photo's ``full_size``), then crop +
    normalise, each lapped."""
    size = pp.output_size(*(full_size or img.size), SPEC)
    if size != img.size or box is not None:
        img = img.resize(size, resample=SPEC.resample, box=box, reducing_gap=reducing_gap)
    clock.lap("resize")
    out = pp.normalise(pp.centre_crop(np.asarray(img), SPEC), SPEC)
    clock.lap("crop+normalise")
    return out


def _draft_size(img: Image.Image, factor: float) -> tuple[int, int] | None:
    """The size to ask Pillow's draft for: as in search.preprocess.decode, by the short side."""
    width, height = img.size
    scale = min(width, height) / (SPEC.target_short_side * factor)
    if scale < 2:
        return None
    return int(width / scale) + 1, int(height / scale) + 1


def _oriented(img: Image.Image, box: tuple | None, full: tuple[int, int],
              orientation: int) -> tuple[Image.Image, tuple | None, tuple[int, int] | None]:
    """The image, its box and the photo's size, as displayed."""
    shown = img.transpose(TRANSPOSE[orientation]) if orientation in TRANSPOSE else img
    if box is None:
        return shown, None, None
    box = pp.oriented_box(box, img.size, orientation)
    return shown, box, (full[1], full[0]) if orientation >= 5 else full


def _read(path: Path, clock: Clock) -> tuple[bytes, Image.Image, int, tuple[int, int]]:
    """The file's bytes, the image opened on them (header only), its EXIF orientation and
    size, each stage lapped."""
    data = path.read_bytes()
    clock.lap("read")
    img = Image.open(io.BytesIO(data))
    pp._exif_fields(img)
    orientation, full = img.getexif().get(pp.TAG_ORIENTATION, 1), img.size
    clock.lap("open+EXIF")
    return data, img, orientation, full


def pillow(draft: float | None = None, reducing_gap: float | None = None,
           box: bool = False) -> Callable:
    """Pillow: open, optionally draft (JPEG DCT scaling, powers of two), load, transpose;
    ``box``: resize over the part of the draft the photo covers (its last row and column
    are partial), sized by the photo's full size."""

    def run(path: Path) -> tuple[np.ndarray, dict]:
        clock = Clock()
        _, img, orientation, full = _read(path, clock)
        region = None
        if draft is not None and (size := _draft_size(img, draft)):
            drafted = img.draft("RGB", size)
            region = drafted[1] if box and drafted else None
        img.load()
        clock.lap("decode")
        img, region, full_size = _oriented(img, region, full, orientation)
        img = pp.to_rgb(img)
        clock.lap("open+EXIF")
        return _finish(img, clock, reducing_gap, region, full_size), clock.stages

    return run




def numpy_decoder(decode_array: Callable[[bytes, int], np.ndarray], factor: float | None):
    """A decoder into a numpy buffer at a reduced DCT scale (k/8, the smallest keeping the
    short side >= factor x 224), EXIF read by Pillow from the header only, the transpose
    done on the small image, the resize over the part the photo covers."""

    def run(path: Path) -> tuple[np.ndarray, dict]:
        clock = Clock()
        data, _, orientation, full = _read(path, clock)
        want = 0 if factor is None else int(SPEC.target_short_side * factor)
        img = Image.fromarray(decode_array(data, want))
        clock.lap("decode")
        k = round(8 * img.width / full[0])  # the scale was k/8; the edge pixels are partial
        region = None if k == 8 else (0, 0, full[0] * k / 8, full[1] * k / 8)
        img, region, full_size = _oriented(img, region, full, orientation)
        clock.lap("open+EXIF")
        return _finish(img, clock, None, region, full_size), clock.stages

    return run


def shipped(path: Path) -> tuple[np.ndarray, dict]:
    """``search.preprocess.decode`` as the decode workers call it (uint8 out), normalised."""
    clock = Clock()
    data = path.read_bytes()
    clock.lap("read")
    px = pp.decode(data, SPEC, draft=True, uint8=True).pixels
    clock.lap("decode")
    out = pp.normalise(px, SPEC)
    clock.lap("crop+normalise")
    return out, clock.stages


def methods() -> tuple[dict[str, Callable], dict[str, str]]:
    found: dict[str, Callable] = {
        "pillow full (exact)": pillow(),
        "pillow full + reduce (gap 3)": pillow(reducing_gap=3.0),
        "pillow draft 2x (before)": pillow(draft=2),
        "pillow draft 2x + box": pillow(draft=2, box=True),
        "pillow draft 2x + box + reduce (gap 1.5)": pillow(draft=2, reducing_gap=1.5, box=True),
        "pillow draft 1.5x + box": pillow(draft=1.5, box=True),
        "pillow draft 1.5x, no box": pillow(draft=1.5),
        "pillow draft 1x + box (adopted)": pillow(draft=1, box=True),
    }
    missing: dict[str, str] = {}
    try:
        import simplejpeg

        def sj(**kw):
            def dec(data: bytes, want: int) -> np.ndarray:
                return simplejpeg.decode_jpeg(data, "RGB", min_height=want, min_width=want, **kw)

            return dec

        found["simplejpeg full"] = numpy_decoder(sj(), None)
        found["simplejpeg 2x + box"] = numpy_decoder(sj(), 2)
        found["simplejpeg 2x fastdct+fastupsample + box"] = numpy_decoder(
            sj(fastdct=True, fastupsample=True), 2)
        found["simplejpeg 1.5x + box"] = numpy_decoder(sj(), 1.5)
    except ImportError as exc:
        missing["simplejpeg"] = f"not installed ({exc})"
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG

        tj = TurboJPEG()
        factors = sorted(tj.scaling_factors, key=lambda f: f[0] / f[1])

        def tj_decode(data: bytes, want: int) -> np.ndarray:
            width, height, _, _ = tj.decode_header(data)
            scale = next(f for f in factors if min(width, height) * f[0] / f[1] >= want)
            return tj.decode(data, pixel_format=TJPF_RGB, scaling_factor=scale)

        found["PyTurboJPEG 2x + box"] = numpy_decoder(tj_decode, 2)
        found["PyTurboJPEG 1.5x + box"] = numpy_decoder(tj_decode, 1.5)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the C library missing or old
        missing["PyTurboJPEG"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    found["decode() as shipped"] = shipped
    return found, missing


def reference_pixels(path: Path) -> np.ndarray:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    proc = CLIPImageProcessorPil()  # CLIP's defaults, the same as SPEC
    with Image.open(path) as img:
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    return proc(images=rgb, return_tensors="np")["pixel_values"][0]


def measure(paths: list[Path], rounds: int) -> tuple[list[dict], dict[str, str]]:
    found, missing = methods()
    refs = [reference_pixels(p) for p in paths]
    for p in paths:
        p.read_bytes()  # into the OS cache
    per_round: dict[str, list[dict[str, float]]] = {m: [] for m in found}
    diffs: dict[str, list[tuple[float, float]]] = {m: [] for m in found}
    for rnd in range(rounds):
        totals = {m: dict.fromkeys(STAGES, 0.0) for m in found}
        for i, path in enumerate(paths):
            for name, run in found.items():
                out, stages = run(path)
                for stage, sec in stages.items():
                    totals[name][stage] += sec
                if rnd == 0:
                    d = np.abs(out - refs[i])
                    diffs[name].append((float(d.mean()), float(d.max())))
        for name in found:
            per_round[name].append({s: v / len(paths) for s, v in totals[name].items()})
    rows = []
    for name in found:
        med_total = statistics.median(sum(r.values()) for r in per_round[name])
        stages = {s: statistics.median(r[s] for r in per_round[name]) * 1000 for s in STAGES}
        mads = [m for m, _ in diffs[name]]
        rows.append({
            "method": name,
            "ms_per_image": round(med_total * 1000, 2),
            "images_per_s_per_core": round(1 / med_total, 1),
            "stages_ms": {s: round(v, 2) for s, v in stages.items()},
            "mean_abs_diff": round(statistics.fmean(mads), 5),
            "worst_image_mean_abs_diff": round(max(mads), 5),
            "max_abs_diff": round(max(m for _, m in diffs[name]), 4),
        })
    return rows, missing


def pickled_sizes(path: Path) -> dict[str, int]:
    """Bytes one decoded image costs to send from a worker, float32 against uint8."""
    data = path.read_bytes()
    return {
        "float32": len(pickle.dumps(pp.decode(data, SPEC), pickle.HIGHEST_PROTOCOL)),
        "uint8": len(pickle.dumps(pp.decode(data, SPEC, uint8=True), pickle.HIGHEST_PROTOCOL)),
    }


def table(sets: dict[str, dict]) -> str:
    lines = []
    for label, res in sets.items():
        lines += [
            f"\n**{label}** ({res['count']} photos, {res['megapixels']} MP)\n",
            "| method | ms/image | images/s per core | " + " | ".join(STAGES)
            + " | mean abs diff | worst photo | max abs diff |",
            "|---" * (6 + len(STAGES)) + "|",
        ]
        for r in res["rows"]:
            lines.append(
                f"| {r['method']} | {r['ms_per_image']:.1f} | {r['images_per_s_per_core']:.0f} | "
                + " | ".join(f"{r['stages_ms'][s]:.1f}" for s in STAGES)
                + f" | {r['mean_abs_diff']:.4f} | {r['worst_image_mean_abs_diff']:.4f} | "
                f"{r['max_abs_diff']:.3f} |"
            )
        for name, why in res["missing"].items():
            lines.append(f"\n{name}: not measured here: {why}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=24, help="photos per set (default 24)")
    ap.add_argument("--long-side", type=int, default=4000)
    ap.add_argument("--small-long-side", type=int, default=800)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args(argv)

    from benchmarks.photos import make_benchmark_photos

    sets = {}
    for label, side in (("camera photos", args.long_side), ("small photos", args.small_long_side)):
        paths = make_benchmark_photos(args.out / "photos" / f"{side}px", args.count, side)
        with Image.open(paths[0]) as im:
            mp = round(im.size[0] * im.size[1] / 1e6, 2)
        log(f"{label}: {len(paths)} photos of {side} px, {args.rounds} rounds")
        rows, missing = measure(paths, args.rounds)
        sets[f"{label}, {side} px"] = {"count": len(paths), "megapixels": mp, "rows": rows,
                                        "missing": missing,
                                        "pickled_bytes_per_image": pickled_sizes(paths[0])}
    load = os.getloadavg()
    meta = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in load], "rounds": args.rounds,
            "python": platform.python_version(), "pillow": Image.__version__}
    try:
        from search.encoders.precision import cpu_name

        meta["cpu"] = cpu_name()
    except Exception:  # noqa: BLE001 - a label only
        pass
    text = table(sets)
    sizes = next(iter(sets.values()))["pickled_bytes_per_image"]
    text += (f"\nPickled `Decoded` per image: float32 {sizes['float32']} bytes, "
             f"uint8 {sizes['uint8']} bytes.\n"
             f"\n{meta['cpu']}, {meta['cores']} cores, load average at the end "
             f"{meta['load_average_at_end'][0]}.\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decode.json").write_text(json.dumps({**meta, "sets": sets}, indent=2) + "\n")
    (args.out / "decode.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
