"""``model.runtime: auto``: the (runtime, precision) pair, measured once and cached.

Every pair this machine can run is checked with precision auto's fidelity gate
(``search.encoders.precision.measure``): every image and text vector within cosine
``MIN_COSINE`` of torch fp32's, and the same top-1 caption -> photo match. The fastest
faithful pair wins; torch fp32 is the reference and the fallback. The choice is cached in
``<data_dir>/runtime.json`` per model, device, CPU and the versions of torch and of each
runtime, so a new version measures again. Vectors from any faithful pair share the model's
index, as those from any faithful precision do: the gate bounds their distance to fp32's.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search.encoders import precision as prec
from search.encoders import runtimes
from search.errors import ConfigError, PixseekError, first_line

log = logging.getLogger(__name__)

CACHE_NAME = "runtime.json"
RUNOFF_ROUNDS = 3  # the faithful candidates timed again, in turns
RUNOFF_MAX = 3  # the fastest faithful pairs that take part besides every int8 pair
# Each pair's first pass times one call: the runoff times the ones that can win, in turns.
FIRST_PASS_RUNS = 1


def _exported_fp32(label: str) -> bool:
    runtime, p = runtimes.parse(label)
    return runtime != "torch" and p == "fp32"


def _int8(label: str) -> bool:
    return runtimes.parse(label)[1].startswith("int8")


def candidates(device: str, allowed: Sequence[str], fp16: bool) -> list[str]:
    """Every (runtime, precision) label to measure against torch fp32 on ``device``."""
    out: list[str] = []
    bf16_fast = prec.fast_bf16_cpu() if device == "cpu" else True
    for runtime in allowed:
        if runtime == "torch":
            out += [p for p in prec.supported(device) if p != "fp32" and (fp16 or p != "fp16")]
            continue
        if device != "cpu" or not runtimes.available(runtime):
            continue
        for p in runtimes.PRECISIONS[runtime]:
            if p == "bf16" and not bf16_fast:
                continue  # OpenVINO would run it in f32 anyway
            if runtimes.available(runtime, p):
                out.append(runtimes.label(runtime, p))
    return out


def cache_key(model_id: str, device: str, allowed: Sequence[str]) -> str:
    versions = " ".join(f"{r} {runtimes.version(r)}" for r in allowed if r != "torch")
    return f"{prec.cache_key(model_id, device)} | {versions or 'torch only'}"


def cache_path(cache_dir: str | Path | None) -> Path:
    return prec.cache_path(cache_dir).with_name(CACHE_NAME)


def read_cache(cache_dir: str | Path | None) -> dict:
    return prec.read_choices(cache_path(cache_dir))


def cached_choice(cache_dir, model_id: str, device: str, allowed: Sequence[str]) -> dict | None:
    entry = read_cache(cache_dir).get(cache_key(model_id, device, allowed))
    if isinstance(entry, dict) and entry.get("runtime") in runtimes.RUNTIMES:
        return entry
    return None


def latest_choice(cache_dir, model_id: str, device: str) -> dict | None:
    """The cached pair for this model and device under the installed runtimes, any
    ``allowed`` set (what ``status`` shows before the model loads)."""
    allowed = [r for r in runtimes.RUNTIMES if runtimes.available(r)]
    return cached_choice(cache_dir, model_id, device, allowed)


def write_choice(cache_dir, model_id: str, device: str, allowed: Sequence[str], entry: dict):
    prec.save_choice(cache_path(cache_dir), cache_key(model_id, device, allowed), entry,
                     "runtime")


def settle(enc, runtime: str, precision: str, fp16: bool, min_cosine: float | None):
    """(runtime, precision, reason) for a loaded ``ClipEncoder`` whose runtime is not torch.
    A precision still ``auto`` on torch is left to precision auto."""
    if enc.naflex:
        if runtime != "auto":
            raise ConfigError(
                f"model.runtime: {runtime} cannot run SigLIP 2 NaFlex (its patch grid differs "
                "per photo); use torch or auto")
        enc._runtime_note = "auto: SigLIP 2 NaFlex runs on torch"
        return "torch", precision, "asked for"
    if precision != "auto":
        if runtime == "auto":
            chosen = runtimes.default_for(precision)
            return chosen, precision, f"auto with precision {precision} asked for: {chosen}"
        return runtime, precision, "asked for"
    allowed = list(runtimes.RUNTIMES) if runtime == "auto" else [runtime]
    return choose(enc, allowed, fp16, min_cosine)


def choose(enc, allowed: Sequence[str], fp16: bool, min_cosine: float | None):
    cache_dir = enc.cache_dir
    hit = cached_choice(cache_dir, enc.model_id, enc.device, allowed)
    if hit is not None:
        return hit["runtime"], hit["precision"], f"auto, cached: {hit.get('reason', '')}"
    batch = prec.sample_batch(enc.spec)
    if batch is None:
        reason = "auto: no sample photos are installed to check fidelity, so torch fp32"
        log.warning("runtime %s", reason)
        return "torch", "fp32", reason
    pixels, captions = batch
    labels = candidates(enc.device, allowed, fp16)
    later: list[str] = []  # measured only if nothing beats torch fp32
    if "torch" not in allowed:
        labels.insert(0, runtimes.label(allowed[0], "fp32"))
    elif enc.device == "cpu":
        # An exported fp32 is slower than the int8 and bf16 pairs on a CPU: it can only win
        # when none of them is faithful.
        later = [label for label in labels if _exported_fp32(label)]
        labels = [label for label in labels if label not in later]
    calibration = functools.cache(enc.calibration)  # one set for both runtimes' int8-static
    held: dict[str, object] = {}
    room = [1]  # variants held at once: one while measuring, a few for the runoff

    def model_for(label: str):
        if label not in held:
            while len(held) >= room[0]:
                held.pop(next(iter(held)))
            runtime, p = runtimes.parse(label)
            if runtime == "torch":
                held[label] = prec.apply(enc.model, p, inplace=False)
            else:
                from search.encoders.exported import load_towers

                held[label] = load_towers(
                    lambda: enc.model, enc.model_type, enc.image_side(), enc.model_id, runtime, p,
                    enc.spec, calibration=calibration, keep_compiled=False)
        return held[label]

    def encode(label: str, px: np.ndarray | None, texts: Sequence[str] | None) -> np.ndarray:
        runtime, p = runtimes.parse(label)
        if label == "fp32":
            model, runtime = enc.model, "torch"
        else:
            try:
                model = model_for(label)
            except Exception as exc:  # noqa: BLE001 - an export that fails loses its trial
                raise RuntimeError(f"cannot prepare it: {first_line(exc)}") from None
        if runtime == "torch":
            if px is not None:
                return enc._image_features(model, prec.input_dtype(p), px)
            return enc._text_features(model, texts or [])
        try:
            if px is not None:
                return enc.exported_image_features(model, px)
            return enc.exported_text_features(model, texts or [])
        except Exception as exc:  # noqa: BLE001 - the runtime's own error types
            raise RuntimeError(first_line(exc)) from None

    bound = prec.MIN_COSINE if min_cosine is None else min_cosine
    choice = prec.measure(encode, pixels, captions, labels, device=enc.device,
                          min_cosine=bound, runs=FIRST_PASS_RUNS)
    if later and choice.precision == "fp32":
        held.clear()
        choice = prec.measure(encode, pixels, captions, labels + later, device=enc.device,
                              min_cosine=bound, runs=FIRST_PASS_RUNS)
        choice.reason += "; measured " + ", ".join(later) + " too (nothing beat torch fp32 " \
            "at first)"
    elif later:
        choice.reason += "; not measured: " + ", ".join(later) + " (slower than " + \
            choice.precision + " on a CPU)"
    held.clear()
    room[0] = len(labels) + len(later)
    choice = _runoff(choice, encode, model_for, pixels[: prec.TIMED_IMAGES])
    held.clear()
    runtime, precision = runtimes.parse(choice.precision)
    if runtime not in allowed:  # torch fp32 was the reference of one exported runtime
        runtime = allowed[0]
    why = f"{runtimes.label(runtime, precision)}; every pair against torch fp32: {choice.reason}"
    entry = choice.as_entry() | {"runtime": runtime, "precision": precision, "reason": why,
                                 "runoff": getattr(choice, "runoff", {})}
    write_choice(cache_dir, enc.model_id, enc.device, allowed, entry)
    message = f"runtime auto: {why}"
    log.info("%s", message)
    print(message, file=sys.stderr)
    return runtime, precision, f"auto: {why}"


def _runoff(choice, encode, model_for, timed: np.ndarray, rounds: int = RUNOFF_ROUNDS):
    """Every faithful int8 pair and the ``RUNOFF_MAX`` fastest faithful pairs, timed again in
    interleaved rounds (each round in a new order), the best call of each: the first pass
    times one candidate after another, once, so a burst of other work on the machine during
    one of them, or a slow first call, could otherwise pick the slower pair."""
    faithful = sorted((t for t in choice.trials if t.faithful and t.images_per_s),
                      key=lambda t: -t.images_per_s)
    faster = [t.precision for t in faithful if t.precision != "fp32"]
    labels = faster[:RUNOFF_MAX] + [p for p in faster[RUNOFF_MAX:] if _int8(p)]
    if len(labels) == 1:
        labels.append("fp32")  # torch fp32, the reference, against the one faster pair
    if len(labels) < 2:
        return choice
    for label in labels:
        if label != "fp32":
            model_for(label)  # held for the rounds
    for label in labels:
        encode(label, timed[:1], None)  # warm: the first call of a loaded runtime is slower
    best: dict[str, float] = {}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            t0 = time.perf_counter()
            encode(label, timed, None)
            rate = len(timed) / (time.perf_counter() - t0)
            best[label] = max(best.get(label, 0.0), rate)
    winner = max(best, key=best.get)
    for t in choice.trials:
        if t.precision in best:
            t.images_per_s = best[t.precision]
    choice.runoff = best  # recorded in the cache entry
    rates = ", ".join(f"{label} {rate:.1f}" for label, rate in best.items())
    if winner == choice.precision:
        choice.reason += f"; the fastest again in turns (img/s: {rates})"
    else:
        choice.reason = (f"{winner}, the fastest in turns (img/s: {rates}); before that: "
                         + choice.reason)
        choice.precision = winner
    return choice


def installed() -> list[str]:
    """The runtimes this machine can run, with their versions."""
    return [r if r == "torch" else f"{r} {runtimes.version(r)}"
            for r in runtimes.RUNTIMES if runtimes.available(r)]


def describe(model_cfg, model_id: str, cache_dir) -> dict:
    """The runtime the configured model runs on, without loading it: ``setting``, ``in_use``
    (None until auto has measured), ``precision`` (the pair's, None if not known here),
    ``reason`` and ``installed``."""
    from search.encoders.base import pick_device
    from search.encoders.names import OFFLINE_MODEL_ID

    setting, precision = model_cfg.runtime, model_cfg.precision
    out = {"setting": setting, "in_use": "torch", "precision": None, "reason": "asked for",
           "installed": installed()}
    try:
        device = pick_device(model_cfg.device)
    except ConfigError as exc:
        return out | {"in_use": None, "reason": str(exc)}
    if model_id == OFFLINE_MODEL_ID:
        from search.encoders.offline_runtime import choose

        try:
            runtime, why = choose(setting, device)
        except PixseekError as exc:  # a runtime that cannot run here, or is not installed
            return out | {"in_use": None, "reason": str(exc)}
        return out | {"in_use": runtime, "precision": "fp32", "reason": why}
    if setting not in ("auto", "torch") and not runtimes.available(setting, precision):
        try:
            runtimes.require(setting, precision)
        except Exception as exc:  # noqa: BLE001 - the DependencyError's message
            return out | {"in_use": None, "reason": str(exc)}
    if setting == "torch":
        return out
    if device != "cpu":
        return out | {"reason": f"torch is the {device} path"}
    if precision != "auto":
        if setting == "auto":
            chosen = runtimes.default_for(precision)
            return out | {"in_use": chosen, "precision": precision,
                          "reason": f"auto with precision {precision} asked for: {chosen}"}
        return out | {"in_use": setting, "precision": precision}
    allowed = list(runtimes.RUNTIMES) if setting == "auto" else [setting]
    hit = cached_choice(cache_dir, model_id, device, allowed)
    if hit is None:
        return out | {"in_use": None, "reason": f"not measured yet on this machine ({device}): "
                      "measured the first time the model is used"}
    return out | {"in_use": hit["runtime"], "precision": hit["precision"],
                  "reason": hit.get("reason", "")}
