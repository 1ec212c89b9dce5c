"""Numeric precision of a loaded CLIP: ``model.precision: auto | fp32 | bf16 | fp16 | int8``.

- ``fp32`` runs the model as loaded; ``bf16`` / ``fp16`` cast its weights (inputs are cast to
  match); ``int8`` is dynamic quantisation of its ``Linear`` layers (weights int8,
  activations quantised per batch), CPU only.
- ``auto`` chooses once per model, device, CPU and torch version, and caches the choice in
  ``<data_dir>/precision.json``. It encodes real sample photos and their captions at every
  precision the device supports; a precision is *faithful* when every image and text
  embedding stays within cosine ``MIN_COSINE`` of fp32's and the top-1 caption -> photo
  match is the same for every caption (or a photo fp32 scores within ``TOP1_TIE`` of its
  own top-1: a tie). It then times a batch of those photos at each
  faithful precision and takes the fastest. fp32 is the fallback, with the reason.

What keeps the first use short (it runs once per model and machine, but a user waits):

- bf16 on a CPU is not measured where /proc/cpuinfo lists neither ``amx_bf16`` nor
  ``avx512_bf16``: without them torch emulates bf16 matmuls and runs several times slower
  than fp32, so it could never win (its trial says so). A CPU whose flags cannot be read
  (not Linux) is measured. ``fast_bf16_cpu`` is the rule; a test patches it to force bf16.
- A candidate is timed on ``TIMED_IMAGES`` of the photos, and not timed at all when its
  first (fidelity) call already took ``CLEARLY_SLOWER`` times the best time so far; a timed
  run that slow ends its timing too. Its rate is then the rate seen, for the record.

Vectors made at any faithful precision share the fp32 index (one model id): the check that
admits a precision bounds how far its vectors are from fp32's (docs/architecture.md, Models).
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.errors import ConfigError, first_line

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
SUPPORTED = {
    "cpu": ("fp32", "bf16", "int8"),
    "cuda": ("fp32", "fp16", "bf16"),
    "mps": ("fp32", "fp16"),
}
MIN_COSINE = 0.995
# Two photos whose fp32 scores for a caption differ by less than this are a tie: either is
# the same top-1. 0.01 cosine is one logit at CLIP's temperature (100). Without it, a model
# whose retrieval is noise (random weights: top-1 margins of 0.0001-0.004) fails on ties
# that fp32 itself barely decides; a model that separates its top-1 by more fails on a flip.
TOP1_TIE = 0.01
CACHE_NAME = "precision.json"
SAMPLE_IMAGES = 32  # the photos the fidelity check encodes
TIMED_IMAGES = 16  # the timed batch: the first of them (the ranking is the same as at 32)
TIMED_RUNS = 3
CLEARLY_SLOWER = 1.5  # a call this much slower than the best time so far ends the timing
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # bf16 matmuls in hardware

# torch is imported where it is used: ``pixseek status`` reads the cached choice through
# this module and must not pay torch's second for it.
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


# Where ``model.fp16`` (and precision unset) means fp16: the GPUs with fast half precision
# (Apple's MPS among them: leaving it out would ignore fp16 there without a word).
FP16_DEVICES = ("cuda", "mps")


def default_precision(device: str, fp16: bool) -> str:
    """The precision when none is set: fp16 on CUDA or MPS when ``fp16``, else fp32."""
    return "fp16" if fp16 and device in FP16_DEVICES else "fp32"


def supported(device: str) -> tuple[str, ...]:
    return SUPPORTED.get(device, ("fp32",))


def check_supported(precision: str, device: str) -> None:
    """An explicit precision this device cannot run is one ConfigError line."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"model.precision: '{precision}' is not one of auto, {', '.join(PRECISIONS)}"
        )
    if precision not in supported(device):
        raise ConfigError(
            f"model.precision: {precision} is not available on {device} "
            f"(it supports {', '.join(supported(device))}); use auto or one of those"
        )


def input_dtype(precision: str) -> torch.dtype:
    """The dtype the model's inputs are cast to (int8 takes float32 activations)."""
    import torch

    return getattr(torch, DTYPE_NAMES.get(precision, "float32"))


def apply(model: torch.nn.Module, precision: str, *, inplace: bool = True) -> torch.nn.Module:
    """``model`` (float32) at ``precision``. ``inplace=False`` leaves ``model`` untouched."""
    import torch

    if precision == "fp32":
        return model if inplace else copy.deepcopy(model)
    if precision in ("bf16", "fp16"):
        target = model if inplace else copy.deepcopy(model)
        return target.to(input_dtype(precision))
    if precision == "int8":
        with warnings.catch_warnings():
            # torch.ao.quantization warns it is deprecated in favour of torchao, which is
            # not a dependency; quantize_dynamic still works.
            warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions")
            return torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8, inplace=inplace
            )
    raise ConfigError(f"model.precision: '{precision}' is not one of {', '.join(PRECISIONS)}")


# --- the cache ------------------------------------------------------------------------


def _cpuinfo(field: str) -> str | None:
    """The value of ``field`` (the first CPU's) in /proc/cpuinfo, or None where there is
    none (not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1]
    except OSError:
        pass
    return None


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo, or None where it cannot be read."""
    flags = _cpuinfo("flags")
    return None if flags is None else set(flags.split())


def bf16_in_hardware(flags: set[str] | None) -> bool:
    """The rule: bf16 is worth measuring on a CPU with AMX or AVX512-BF16, or whose flags
    are unknown (then only a measurement can tell)."""
    return flags is None or any(f in flags for f in BF16_CPU_FLAGS)


def fast_bf16_cpu() -> bool:
    """The rule on this CPU (a test patches this to force or skip bf16)."""
    return bf16_in_hardware(cpu_flags())


def not_measured(precision: str, device: str | None) -> str | None:
    """Why ``precision`` is not worth measuring on ``device``, or None."""
    if precision == "bf16" and device == "cpu" and not fast_bf16_cpu():
        return f"this CPU has neither {' nor '.join(BF16_CPU_FLAGS)}: bf16 is emulated, slower"
    return None


def cpu_name() -> str:
    name = _cpuinfo("model name")
    if name is not None:
        return name.strip()
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return f"cuda {torch.cuda.get_device_name()}"
    return device


def torch_version() -> str:
    """torch's version as ``torch.__version__`` says it, read without importing torch
    when it is not imported yet (the wheel's metadata carries the same string)."""
    from importlib.metadata import PackageNotFoundError, version

    if "torch" not in sys.modules:
        try:
            return version("torch")
        except PackageNotFoundError:  # installed without its metadata: ask torch
            pass
    import torch

    return str(torch.__version__)


def cache_key(model_id: str, device: str) -> str:
    return f"{model_id} | {device_name(device)} | {cpu_name()} | torch {torch_version()}"


def cache_path(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        from search.files import cache_dir as user_cache_dir

        cache_dir = user_cache_dir()
    return Path(cache_dir).expanduser() / CACHE_NAME


def read_choices(path: Path) -> dict:
    """A choices file (this one, or the runtime's): {} when missing, unreadable or odd."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_choice(path: Path, key: str, entry: dict, what: str) -> None:
    """Add ``entry`` under ``key`` to the choices file at ``path``, atomically."""
    from search.files import atomic_write

    data = read_choices(path)
    data[key] = entry
    try:
        with atomic_write(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
    except OSError as exc:  # a read-only data dir measures again next time
        log.warning("%s: cannot cache the choice in %s: %s", what, path, exc)


def read_cache(cache_dir: str | Path | None) -> dict:
    return read_choices(cache_path(cache_dir))


def cached_choice(cache_dir: str | Path | None, model_id: str, device: str) -> dict | None:
    entry = read_cache(cache_dir).get(cache_key(model_id, device))
    if isinstance(entry, dict) and entry.get("precision") in PRECISIONS:
        return entry
    return None


def write_choice(cache_dir: str | Path | None, model_id: str, device: str, entry: dict) -> None:
    save_choice(cache_path(cache_dir), cache_key(model_id, device), entry, "precision")


# --- measuring ------------------------------------------------------------------------


@dataclass
class Trial:
    precision: str
    min_image_cosine: float = 0.0
    min_text_cosine: float = 0.0
    top1_same: bool = False
    top1_ties: int = 0  # captions whose top-1 changed to a photo fp32 scores within TOP1_TIE
    faithful: bool = False
    images_per_s: float | None = None
    error: str | None = None
    skipped: str | None = None  # not measured, and why
    timed_runs: int = 0  # 0: the rate is its first call's (clearly slower, not timed further)

    def why_not(self, min_cosine: float) -> str:
        if self.skipped:
            return f"{self.precision} not measured ({self.skipped})"
        if self.error:
            return f"{self.precision} failed to run ({self.error})"
        parts = []
        if self.min_image_cosine < min_cosine:
            parts.append(f"image cosine {self.min_image_cosine:.4f}")
        if self.min_text_cosine < min_cosine:
            parts.append(f"text cosine {self.min_text_cosine:.4f}")
        if not self.top1_same:
            parts.append("top-1 retrieval differs beyond a tie")
        return f"{self.precision} unfaithful ({', '.join(parts)} against fp32, min {min_cosine})"


@dataclass
class Choice:
    precision: str
    reason: str
    trials: list[Trial] = field(default_factory=list)

    def as_entry(self) -> dict:
        return {
            "precision": self.precision,
            "reason": self.reason,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "trials": [t.__dict__ for t in self.trials],
        }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _top1(images: np.ndarray, texts: np.ndarray) -> np.ndarray:
    return np.argmax(texts @ images.T, axis=1)


def _top1_check(ref_scores: np.ndarray, picks: np.ndarray, tie: float) -> tuple[bool, int]:
    """(every caption's top-1 is fp32's or ties with it in fp32's scores, how many ties)."""
    rows = np.arange(len(picks))
    best = ref_scores.argmax(axis=1)
    changed = picks != best
    gap = ref_scores[rows, best] - ref_scores[rows, picks]
    return bool(np.all(~changed | (gap <= tie))), int(changed.sum())


def _timed_rate(
    fn: Callable[[], object], images: int, runs: int, best_seconds: float | None
) -> tuple[float, int]:
    """(images/s from the fastest of up to ``runs`` calls, calls made). The fastest, not the
    median: other work on the machine only ever adds time, and a burst of it during one
    candidate's runs must not hand the choice to another. A call slower than
    ``CLEARLY_SLOWER`` times ``best_seconds`` ends it: that candidate cannot win."""
    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if best_seconds is not None and times[-1] > CLEARLY_SLOWER * best_seconds:
            break
    return images / min(times), len(times)


def measure(
    encode: Callable[[str, np.ndarray | None, Sequence[str] | None], np.ndarray],
    pixels: np.ndarray,
    captions: Sequence[str],
    candidates: Sequence[str],
    *,
    min_cosine: float = MIN_COSINE,
    top1_tie: float = TOP1_TIE,
    runs: int = TIMED_RUNS,
    device: str | None = None,
    timed_images: int = TIMED_IMAGES,
) -> Choice:
    """Choose among ``candidates`` (fp32 included or not: it is always the reference).

    ``encode(precision, pixels, None)`` -> image vectors, ``encode(precision, None, texts)``
    -> text vectors, with the model at that precision. ``device`` lets it skip a precision
    that cannot win there (``not_measured``)."""
    timed = pixels[:timed_images]
    ref_img = encode("fp32", pixels, None)
    ref_txt = encode("fp32", None, captions)
    ref_scores = ref_txt @ ref_img.T
    fp32 = Trial("fp32", min_image_cosine=1.0, min_text_cosine=1.0, top1_same=True, faithful=True)
    fp32.images_per_s, fp32.timed_runs = _timed_rate(
        lambda: encode("fp32", timed, None), len(timed), runs, None
    )
    trials = [fp32]
    for p in candidates:
        if p == "fp32":
            continue
        t = Trial(p, skipped=not_measured(p, device))
        trials.append(t)
        if t.skipped:
            continue
        try:
            t0 = time.perf_counter()
            img = encode(p, pixels, None)  # also the warm-up of the timing
            first_call = time.perf_counter() - t0
            txt = encode(p, None, captions)
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            t.error = first_line(exc)[:200]
            continue
        t.min_image_cosine = float(_cosines(img, ref_img).min())
        t.min_text_cosine = float(_cosines(txt, ref_txt).min())
        t.top1_same, t.top1_ties = _top1_check(ref_scores, _top1(img, txt), top1_tie)
        t.faithful = (
            bool(np.isfinite(img).all() and np.isfinite(txt).all())
            and t.min_image_cosine >= min_cosine
            and t.min_text_cosine >= min_cosine
            and t.top1_same
        )
        if t.faithful:
            t.images_per_s = len(pixels) / first_call
            best = max(x.images_per_s or 0.0 for x in trials if x.faithful and x is not t)
            if t.images_per_s * CLEARLY_SLOWER >= best:  # not clearly slower: time it
                t.images_per_s, t.timed_runs = _timed_rate(
                    lambda p=p: encode(p, timed, None), len(timed), runs, len(timed) / best
                )
    best = max((t for t in trials if t.faithful), key=lambda t: t.images_per_s or 0.0)
    refused = [t.why_not(min_cosine) for t in trials if not t.faithful and not t.skipped]
    skipped = [t.why_not(min_cosine) for t in trials if t.skipped]
    if best.precision == "fp32":
        faster = [t.precision for t in trials if t.faithful and t.precision != "fp32"]
        why = f"fp32 ({fp32.images_per_s:.1f} img/s)"
        if faster:
            why += f"; {', '.join(faster)} faithful but not faster"
    else:
        worst = min(best.min_image_cosine, best.min_text_cosine)
        why = (
            f"{best.precision} ({best.images_per_s:.1f} img/s against "
            f"{fp32.images_per_s:.1f} for fp32; min cosine {worst:.4f}, same top-1"
            + (f" up to {best.top1_ties} ties" if best.top1_ties else "")
            + ")"
        )
    if refused:
        why += "; refused: " + "; ".join(refused)
    if skipped:
        why += "; " + "; ".join(skipped)
    return Choice(best.precision, why, trials)


def sample_batch(spec, count: int = SAMPLE_IMAGES) -> tuple[np.ndarray, list[str]] | None:
    """Real photos at the model's resolution and one caption each, or None if none are
    installed."""
    from search.preprocess import decode
    from search.samples import sample_photos

    photos = [p for p in sample_photos() if p.captions][:count]
    if len(photos) < 2:
        return None
    # uint8, as the decode workers ship them: each runtime normalises them its own way
    pixels = np.stack([decode(p.path, spec, uint8=True).pixels for p in photos])
    return pixels, [p.captions[0] for p in photos]
