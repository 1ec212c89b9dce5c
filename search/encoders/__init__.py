"""One door to every model: ``load_encoder("offline" | preset | hub id | alias | folder)``."""

from __future__ import annotations

from search.encoders.base import Encoder, pick_device
from search.encoders.names import (
    ALIASES,
    OFFLINE_MODEL_ID,
    OFFLINE_NAMES,
    canonical_model_id,
    resolve_name,
)

__all__ = [
    "ALIASES", "Encoder", "canonical_model_id", "load_encoder", "pick_device", "resolve_name",
]


def load_encoder(
    name,
    device: str = "auto",
    fp16: bool = True,
    precision: str | None = None,
    cache_dir=None,
    runtime: str | None = None,
    calibration_photos=None,
) -> Encoder:
    """Load a model by name: ``offline``, an OpenAI alias (``ViT-B/32``), a hub id or a
    folder; or by the configuration's ``model`` section (``load_encoder(config.model)``),
    which brings its device and precision.

    ``precision`` (``auto | fp32 | bf16 | fp16 | int8``, see ``search.encoders.precision``)
    None means fp16 on CUDA or MPS when ``fp16``, else fp32. ``auto`` caches its measured
    choice in ``cache_dir/precision.json`` (pass the data dir; default: the user cache dir).
    ``runtime`` (``auto | torch | onnxruntime | openvino``, ``search.encoders.runtimes``)
    None means torch, or the configuration's; ``calibration_photos()`` lists the photos
    static int8 is calibrated on."""
    from search.config import ModelConfig

    if isinstance(name, ModelConfig):
        if precision is None:
            precision = name.precision
        if runtime is None:
            runtime = name.runtime
        name, device, fp16 = name.name, name.device, name.fp16

    if name in OFFLINE_NAMES or name == OFFLINE_MODEL_ID:
        from search.encoders.offline import OfflineEncoder

        return OfflineEncoder(device=device, runtime=runtime)
    from search.encoders.clip import ClipEncoder
    from search.encoders.oom import load_with_fallback

    # Out of GPU memory: the CPU under auto, else one line (search.encoders.oom).
    return load_with_fallback(
        lambda d: ClipEncoder(name, device=d, fp16=fp16, precision=precision, cache_dir=cache_dir,
                              runtime=runtime or "torch", calibration_photos=calibration_photos),
        device,
    )
