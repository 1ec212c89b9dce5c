"""OpenVINO: the exported ONNX towers converted to OpenVINO's IR, compiled for the CPU.

``fp32`` compiles with the f32 inference hint; ``bf16`` with the bf16 hint (OpenVINO's own
default on CPUs with bf16 in hardware); ``int8-static`` is NNCF's post-training
quantisation of the IR (transformer preset, with smooth quant), calibrated on real photos
and captions, compiled with OpenVINO's default hint.

The image tower is compiled to take the decode workers' uint8 pixels: the rescale and the
mean/std normalisation become its first operations (``uint8_input``), run in OpenVINO's
threads beside the model, instead of a single-threaded pass before each call.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# int8-static leaves the hint to OpenVINO: its layers that stay in float (softmax, norms,
# the attention products) then run bf16 where the CPU has it, as OpenVINO's own default.
HINTS = {"fp32": "f32", "bf16": "bf16", "int8-static": None}


def convert(base: Path, out: Path) -> None:
    """ONNX towers -> ``image.xml`` / ``text.xml`` (weights kept in fp32)."""
    import openvino as ov

    for tower in ("image", "text"):
        model = ov.convert_model(str(base / f"{tower}.onnx"))
        ov.save_model(model, str(out / f"{tower}.xml"), compress_to_fp16=False)


def quantize_static(ir: Path, out: Path, image_feeds: list[dict], text_feeds: list[dict]) -> None:
    """NNCF post-training int8 of both IR towers, calibrated on ``*_feeds``."""
    import nncf
    import openvino as ov

    core = ov.Core()
    for tower, feeds in (("image", image_feeds), ("text", text_feeds)):
        model = core.read_model(str(ir / f"{tower}.xml"))
        quantized = nncf.quantize(
            model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
            subset_size=max(1, len(feeds)),
        )
        ov.save_model(quantized, str(out / f"{tower}.xml"), compress_to_fp16=False)


def uint8_input(model, spec):
    """``model`` (an image tower taking normalised float32 [N, 3, H, W]) taking uint8 pixels
    instead: ``search.preprocess.normalise``'s rescale, mean and std as its first operations,
    in the same order and in float32 (OpenVINO may fuse them: vectors agree to 1e-7)."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.preprocess import PrePostProcessor

    def normalise(node):
        x = ops.multiply(node, ops.constant(np.float32(spec.rescale)))
        x = ops.subtract(x, ops.constant(np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)))
        std = ops.constant(np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1))
        return ops.divide(x, std).output(0)

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8)
    ppp.input().preprocess().convert_element_type(ov.Type.f32).custom(normalise)
    return ppp.build()


def compile_tower(path: Path, precision: str, keep: bool = True, spec=None):
    """The tower at ``path`` compiled for the CPU; ``keep``: in OpenVINO's own cache of
    compiled models, beside the file it came from (and removed with it), which a later load
    imports instead of compiling again (0.2 s against 1.2 s for a ViT-B/32's two towers).
    With a ``PreprocessSpec``, an image tower compiled for uint8 pixels (``uint8_input``)."""
    import openvino as ov

    core = ov.Core()
    hint = HINTS[precision]
    config = {"CACHE_DIR": str(path.parent / "compiled")} if keep else {}
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    if spec is None:
        return core.compile_model(str(path), "CPU", config)
    return core.compile_model(uint8_input(core.read_model(str(path)), spec), "CPU", config)
