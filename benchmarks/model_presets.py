"""What each model preset (``pixseek models``) costs on this machine.

Builds every preset's architecture with random weights, in the exact shape of the published
checkpoint (its config.json values below), saves it as a transformers folder and loads it
through ``load_encoder``, the path the real checkpoint takes. Random weights cost what real
ones cost. Every (preset, precision) pair, fp32 and int8 dynamic, is loaded and warmed up
first; then ``--rounds`` rounds each time every pair once, so a shared machine's drift
falls on all of them alike. A precision may name its runtime, as ``RUNTIME:PRECISION``
(``torch:int8``, ``onnxruntime:int8``, ``openvino:int8-static``; ``model.runtime``); a bare
precision runs on torch, and ``vs torch int8`` is each row over the same preset's torch int8:

- images/s: ``encode_pixels`` on a batch of 32 real sample photos, preprocessed before the
  clock starts (the model alone, as ``index_throughput.py``'s "bare model"); the median
  over the rounds;
- queries/s: ``encode_texts`` on one query per call (what a search does), ``--queries``
  calls per round, the median over all of them.

    python benchmarks/model_presets.py                 # every preset, fp32 and int8
    python benchmarks/model_presets.py --presets fast best --rounds 3
    python benchmarks/model_presets.py --presets best --precisions torch:int8 \
        openvino:int8-static onnxruntime:int8      # the exported runtimes (CPU)

Prints a markdown table and writes ``bench-out/model_presets.json`` and ``.md``. The random
SigLIP checkpoints take 1.5 GB each under ``bench-out/models/``.

``build_random_siglip`` is also what the tests load: a SigLIP 2 checkpoint, fixed resolution
(``SiglipModel``, as ``google/siglip2-base-patch16-256``) or NaFlex (``Siglip2Model``), with
a small Gemma-style tokenizer built here (the hub is out of reach).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The published config.json values of the preset checkpoints (model shape only).
BASE_TOWER = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12)
TINY_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2)
SIGLIP_SHAPES = {
    # google/siglip2-base-patch16-256: SiglipModel, Gemma vocabulary (256k), 64 text tokens.
    "best": dict(text=dict(vocab_size=256000, max_position_embeddings=64, **BASE_TOWER),
                 vision=dict(image_size=256, patch_size=16, **BASE_TOWER)),
    # google/siglip-base-patch16-256-multilingual: SiglipModel, 250k SentencePiece vocabulary.
    "multilingual": dict(text=dict(vocab_size=250000, max_position_embeddings=64, **BASE_TOWER),
                         vision=dict(image_size=256, patch_size=16, **BASE_TOWER)),
    "tiny": dict(text=dict(max_position_embeddings=64, **TINY_TOWER),
                 vision=dict(image_size=256, patch_size=16, **TINY_TOWER)),
}
# SiglipImageProcessor settings of the fixed-resolution SigLIP 2 checkpoints.
SIGLIP_PROCESSOR = {
    "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor", "processor_class": "SiglipProcessor",
    "resample": 2, "rescale_factor": 1 / 255, "size": {"height": 256, "width": 256},
}
# Siglip2ImageProcessor (NaFlex): the size follows each photo, up to max_num_patches.
NAFLEX_PROCESSOR = {
    "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "Siglip2ImageProcessor", "processor_class": "Siglip2Processor",
    "max_num_patches": 256, "patch_size": 16, "resample": 2, "rescale_factor": 1 / 255,
}
_WORDS = ["a", "photo", "of", "cat", "dog", "the", "on", "beach", "red", "car", "un", "chat"]


def log(msg: str) -> None:
    print(f"[model_presets] {msg}", file=sys.stderr, flush=True)


def gemma_style_tokenizer():
    """A small tokenizer of the class SigLIP 2 checkpoints ship (GemmaTokenizer: BPE with
    byte fallback, <bos> first, '▁' for spaces), cased as theirs is."""
    from transformers import GemmaTokenizer

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    chars = "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,'"
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    merges = []
    for word in _WORDS:  # whole-word tokens, built letter by letter
        piece = "▁"
        for ch in word:
            merges.append((piece, ch))
            vocab.setdefault(piece + ch, len(vocab))
            piece += ch
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)


def build_random_siglip(folder: str | Path, shape: str = "tiny", naflex: bool = False,
                        seed: int = 0) -> Path:
    """A random-weight SigLIP 2 checkpoint folder (model, tokenizer, image processor
    settings) that ``load_encoder(folder)`` loads as it loads the published one."""
    import torch
    from transformers import Siglip2Config, Siglip2Model, SiglipConfig, SiglipModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = gemma_style_tokenizer()
    dims = SIGLIP_SHAPES[shape]
    text = {"vocab_size": len(tokenizer), "pad_token_id": 0, "eos_token_id": 1,
            "bos_token_id": 2, **dims["text"]}
    torch.manual_seed(seed)
    if naflex:
        vision = {k: v for k, v in dims["vision"].items() if k != "image_size"}
        config = Siglip2Config(text_config=text, vision_config={"num_patches": 256, **vision})
        model = Siglip2Model(config)
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=dims["vision"]))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor = NAFLEX_PROCESSOR if naflex else SIGLIP_PROCESSOR
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder


def build_preset_shape(name: str, models: Path) -> Path:
    """The random-weight stand-in for a preset, built once under ``models``."""
    folder = models / f"preset-{name}-random"
    if (folder / "preprocessor_config.json").is_file():
        return folder
    log(f"building a random-weight model of {name}'s shape in {folder}")
    if name == "fast":
        from training.scratch import build_random_clip

        return build_random_clip(folder, size="vit-b-32")
    return build_random_siglip(folder, shape=name)


def _sample_batch(spec, n: int):
    import numpy as np

    from search.preprocess import decode
    from search.samples import sample_photos

    photos = sample_photos()
    # uint8, as the decode workers ship them: each runtime normalises them its own way
    pixels = [decode(p.path.read_bytes(), spec, draft=False, uint8=True).pixels for p in photos]
    return np.stack([pixels[i % len(pixels)] for i in range(n)])


def parse_pair(pair: str) -> tuple[str, str]:
    """``"openvino:int8-static"`` -> (runtime, precision); a bare precision is torch's."""
    runtime, _, precision = pair.rpartition(":")
    return runtime or "torch", precision


def _median_rate(times: list[float], per_call: int) -> float:
    return per_call / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["fast", "best", "multilingual"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--queries", type=int, default=5, help="timed queries per cell per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args(argv)

    import torch

    from search.encoders import load_encoder
    from search.encoders.precision import cpu_name
    from search.encoders.presets import PRESETS

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    folders = {n: build_preset_shape(n, args.out / "models") for n in args.presets}

    cells = [(n, p) for n in args.presets for p in args.precisions]
    encoders, pixels = {}, {}
    for cell in cells:
        runtime, precision = parse_pair(cell[1])
        t0 = time.perf_counter()
        encoders[cell] = load_encoder(str(folders[cell[0]]), device="cpu", precision=precision,
                                      runtime=runtime)
        log(f"{cell[0]} {cell[1]} loaded in {time.perf_counter() - t0:.1f} s")
        pixels[cell] = _sample_batch(encoders[cell].spec, args.batch_size)
        encoders[cell].encode_pixels(pixels[cell])  # warm-up
        encoders[cell].encode_texts(["warm-up query"])
    queries = [f"a photo of a {w} number {i}" for i, w in enumerate(_WORDS * 10)]
    image_times: dict = {c: [] for c in cells}
    text_times: dict = {c: [] for c in cells}
    load_before = os.getloadavg()
    # Interleaved: each round times every cell once, so the machine's drift (other
    # processes on these shared cores) falls on every cell alike.
    for rnd in range(args.rounds):
        for cell in cells:
            enc = encoders[cell]
            t0 = time.perf_counter()
            enc.encode_pixels(pixels[cell])
            image_times[cell].append(time.perf_counter() - t0)
            for q in queries[rnd * args.queries:(rnd + 1) * args.queries]:
                t0 = time.perf_counter()
                enc.encode_texts([q])
                text_times[cell].append(time.perf_counter() - t0)
        log(f"round {rnd + 1}/{args.rounds}, load average {os.getloadavg()[0]:.1f}")
    results: dict[str, dict[str, dict]] = {n: {} for n in args.presets}
    for name, precision in cells:
        cell = (name, precision)
        results[name][precision] = {
            "images_per_s": round(_median_rate(image_times[cell], args.batch_size), 2),
            "queries_per_s": round(_median_rate(text_times[cell], 1), 1),
            "query_ms": round(1000 * statistics.median(text_times[cell]), 1),
            "image_batches_s": [round(t, 3) for t in image_times[cell]],
            "runs_as": f"{getattr(encoders[cell], 'runtime', 'torch')} "
                       f"{encoders[cell].precision}",
        }
    facts = {
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "batch_size": args.batch_size, "rounds": args.rounds, "queries": args.queries,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d"),
    }
    base = results.get("fast", {}).get("fp32", {}).get("images_per_s")
    lines = [
        f"random weights in each preset's shape, cpu ({facts['cpu']}), {facts['threads']} "
        f"threads, image batch {args.batch_size}, {args.rounds} interleaved rounds, median "
        f"of one batch / {args.queries} single-query calls per round; load average before/after "
        f"{load_before[0]:.1f}/{facts['load_average_after'][0]:.1f}",
        "",
        "| preset | hub id | precision | images/s | vs fast fp32 | vs torch int8 | queries/s "
        "| ms/query |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in args.presets:
        int8 = next((r["images_per_s"] for p, r in results[name].items()
                     if parse_pair(p) == ("torch", "int8")), None)
        for precision, r in results[name].items():
            ratio = f"{r['images_per_s'] / base:.2f}x" if base else "-"
            vs_int8 = f"{r['images_per_s'] / int8:.2f}x" if int8 else "-"
            lines.append(
                f"| {name} | {PRESETS[name].hub_id} | {precision} | {r['images_per_s']:.1f} | "
                f"{ratio} | {vs_int8} | {r['queries_per_s']:.1f} | {r['query_ms']:.1f} |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_presets.md").write_text(table + "\n")
    (args.out / "model_presets.json").write_text(
        json.dumps({"results": results, "facts": facts}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
