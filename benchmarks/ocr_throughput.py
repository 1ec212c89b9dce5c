"""What reading the text in photos costs: the CLIP pass with OCR on against off, and OCR's
own rate on camera photos and on screenshots.

    python benchmarks/ocr_throughput.py [--count 48] [--rounds 2] [--model offline]

- **CLIP pass**: ``Indexer.index`` of the same photos into a fresh data dir, OCR off and on,
  in interleaved rounds. OCR runs after the CLIP pass (a later stage of the same run), so
  the CLIP pass's photos/s is the run's encoded photos over its seconds less the text
  stage's. The target: on/off of at least 0.9.
- **OCR**: photos/s of the text stage alone on camera photos (``benchmarks/photos.py``,
  4000 px JPEGs, mostly without text: detection only) and on screenshots (1280x800 PNGs
  of UI-like text: detection and recognition of many lines).

Writes ``bench-out/ocr_throughput.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINES = ["Inbox (3)", "Settings", "Meeting moved to Thursday 10:30", "Invoice #4821 paid",
         "Flight LX 318 to Lisbon", "Battery 76%", "Wi-Fi: HomeNetwork-5G", "Downloads",
         "Reply to Maria about the kayak trip", "Your order has shipped"]


def screenshots(dest: Path, count: int) -> list[Path]:
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(
        str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), 20)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        im = Image.new("RGB", (1280, 800), (248, 248, 250))
        draw = ImageDraw.Draw(im)
        draw.rectangle((0, 0, 1280, 56), fill=(40, 60, 110))
        draw.text((24, 16), f"Window {i}", font=font, fill=(255, 255, 255))
        for j in range(14):
            draw.text((40, 80 + 48 * j), LINES[(i + j) % len(LINES)] + f" ({i}.{j})", font=font,
                      fill=(30, 30, 30))
        path = dest / f"screen_{i:03d}.png"
        im.save(path)
        out.append(path)
    return out


def run_index(folder: Path, data: Path, model: str, ocr: bool) -> dict:
    from indexer.pipeline import Indexer
    from search.config import load_config
    from search.encoders import load_encoder
    from search.store import Store

    config = load_config(None, overrides={"data_dir": str(data), "model.name": model,
                                          "ocr.enabled": ocr}, environ={})
    encoder = load_encoder(config.model, cache_dir=config.data_path)
    store = Store(config.db_url)
    try:
        s = Indexer(config, store, encoder, progress=False).index([str(folder)])
    finally:
        store.close()
    clip_seconds = s.seconds - s.texts_seconds
    return {"encoded": s.encoded, "seconds": s.seconds, "text_seconds": s.texts_seconds,
            "clip_photos_per_s": s.encoded / clip_seconds,
            "ocr_photos_per_s": (s.texts_read / s.texts_seconds) if s.texts_seconds else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="offline")
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks.photos import make_benchmark_photos

    out = Path(args.out)
    camera = out / "ocr-camera"
    make_benchmark_photos(camera, args.count)
    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as tmp:
        screens = screenshots(Path(tmp) / "screens", max(8, args.count // 4))
        rows: dict[str, list[dict]] = {"off": [], "on": [], "screens": []}
        for r in range(args.rounds):  # interleaved: off, on, off, on ...
            for label in ("off", "on"):
                rows[label].append(run_index(camera, Path(tmp) / f"{label}-{r}", args.model,
                                             label == "on"))
            rows["screens"].append(run_index(screens[0].parent, Path(tmp) / f"s-{r}",
                                             args.model, True))
    med = lambda key, label: statistics.median(r[key] for r in rows[label])  # noqa: E731
    result = {
        "clip_off": med("clip_photos_per_s", "off"),
        "clip_on": med("clip_photos_per_s", "on"),
        "ocr_camera": med("ocr_photos_per_s", "on"),
        "ocr_screens": med("ocr_photos_per_s", "screens"),
        "rows": rows,
        "meta": {"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                 "count": args.count, "rounds": args.rounds, "model": args.model},
    }
    result["clip_on_over_off"] = result["clip_on"] / result["clip_off"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "ocr_throughput.json").write_text(json.dumps(result, indent=1))
    print(f"| | photos/s |\n|---|---|\n"
          f"| CLIP pass, OCR off | {result['clip_off']:.2f} |\n"
          f"| CLIP pass, OCR on | {result['clip_on']:.2f} "
          f"({result['clip_on_over_off']:.2f} of off) |\n"
          f"| OCR, camera photos (4000 px) | {result['ocr_camera']:.2f} |\n"
          f"| OCR, screenshots (1280x800, 15 lines) | {result['ocr_screens']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
