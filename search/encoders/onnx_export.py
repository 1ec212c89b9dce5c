"""A CLIP's image and text towers as ONNX files, and ONNX Runtime's int8 variants of them.

The image tower takes ``pixel_values`` (float32 [N, 3, H, W], normalised as the checkpoint's
processor does) and returns its projected features; the text tower takes ``input_ids`` and,
for CLIP, ``attention_mask`` (SigLIP reads max-length padded ids alone). Both return raw
features: L2 normalisation stays with the encoder, as on torch. Batch and sequence length
are dynamic axes.

torch is imported by the export alone: loading ONNX Runtime's towers (``ort_session``) does
not need it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from search.encoders.export_cache import META_NAME

log = logging.getLogger(__name__)

OPSET = 17
# Static int8 quantises the matrix products only: the attention masks' additions carry
# float32's lowest value, which no int8 range can hold next to real activations.
QUANTIZED_OPS = ["MatMul", "Gemm", "Conv"]


def _tower_modules(model):
    """(image tower, text tower): ``model``'s two feature functions as modules to export."""
    import torch

    def features(out):
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return features(self.model.get_image_features(pixel_values=pixel_values))

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None):
            kw = {"input_ids": input_ids}
            if attention_mask is not None:
                kw["attention_mask"] = attention_mask
            return features(self.model.get_text_features(**kw))

    return ImageTower(), TextTower()


def text_inputs(model_type: str) -> list[str]:
    return ["input_ids"] if model_type.startswith("siglip") else ["input_ids", "attention_mask"]


def export_towers(model, model_type: str, image_side: tuple[int, int], out: Path) -> None:
    """Write ``image.onnx``, ``text.onnx`` and ``towers.json`` (the text inputs) into ``out``."""
    import torch

    model = model.float().eval()
    image_tower, text_tower = _tower_modules(model)
    inputs = text_inputs(model_type)
    pixels = torch.zeros(2, 3, *image_side)
    ids = torch.ones(2, 8, dtype=torch.long)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are about shapes it keeps
        torch.onnx.export(
            image_tower, (pixels,), str(out / "image.onnx"),
            input_names=["pixel_values"], output_names=["features"],
            dynamic_axes={"pixel_values": {0: "n"}, "features": {0: "n"}},
            opset_version=OPSET, dynamo=False,
        )
        axes = {name: {0: "n", 1: "tokens"} for name in inputs}
        torch.onnx.export(
            text_tower, tuple(ids if n == "input_ids" else torch.ones_like(ids)
                                     for n in inputs),
            str(out / "text.onnx"), input_names=inputs, output_names=["features"],
            dynamic_axes={**axes, "features": {0: "n"}}, opset_version=OPSET, dynamo=False,
        )
    (out / META_NAME).write_text(json.dumps({"text_inputs": inputs}))


# --- ONNX Runtime ----------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantiser logs advice on the root logger for every tensor it skips."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_dynamic(base: Path, out: Path) -> None:
    """Weights int8, activations quantised per batch, on both towers."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        for tower in ("image", "text"):
            quantize_dynamic(str(base / f"{tower}.onnx"), str(out / f"{tower}.onnx"),
                             weight_type=QuantType.QInt8)
    (out / META_NAME).write_text((base / META_NAME).read_text())


class _Reader:
    """ONNX Runtime's calibration data reader over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def quantize_static(base: Path, out: Path, image_feeds: list[dict], text_feeds: list[dict]) -> None:
    """Static QDQ int8 (activations' ranges calibrated on ``*_feeds``) on both towers."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with _quiet_root_logger():
        for tower, feeds in (("image", image_feeds), ("text", text_feeds)):
            quantize_static(
                str(base / f"{tower}.onnx"), str(out / f"{tower}.onnx"), _Reader(feeds),
                quant_format=QuantFormat.QDQ, per_channel=True,
                op_types_to_quantize=QUANTIZED_OPS,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
    (out / META_NAME).write_text((base / META_NAME).read_text())


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
