"""OpenVINO: the exported ONNX towers converted to OpenVINO's IR, compiled for the CPU.

``fp32`` compiles with the f32 inference hint; ``bf16`` with the bf16 hint (OpenVINO's own
default on CPUs with bf16 in hardware); ``int8-static`` is NNCF's post-training
quantisation of the IR (transformer preset, with smooth quant), calibrated on real photos
and captions, compiled with OpenVINO's default hint.

The image tower is compiled to take the decode workers' uint8 pixels: the rescale and the
mean/std normalisation become its first operations (``uint8_input``), run in OpenVINO's
threads beside the model, instead of a single-threaded pass before each call.

An image tower runs batches on OpenVINO's throughput streams (``StreamedTower``): each
stream owns a share of the cores, and a batch is split across them.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# int8-static leaves the hint to OpenVINO: its layers that stay in float (softmax, norms,
# the attention products) then run bf16 where the CPU has it, as OpenVINO's own default.
HINTS = {"fp32": "f32", "bf16": "bf16", "int8-static": None}
COMPILED_DIR = "compiled-models"  # OpenVINO's cache of compiled towers, in the IR's folder


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


def compile_tower(path: Path, precision: str, keep: bool = True, spec=None,
                  hint: str = "LATENCY"):
    """The tower at ``path`` compiled for the CPU; ``keep``: in OpenVINO's own cache of
    compiled models, beside the file it came from (and removed with it), which a later load
    imports instead of compiling again (0.2 s against 1.2 s for a ViT-B/32's two towers).
    With a ``PreprocessSpec``, an image tower compiled for uint8 pixels (``uint8_input``).
    ``hint``: OpenVINO's performance hint, ``LATENCY`` (one stream over all cores) or
    ``THROUGHPUT`` (several streams, each a share of the cores).

    Each (precision, hint) has a cache folder of its own: OpenVINO 2026.4 names a compiled
    model by the model alone, not its inference precision, and the fp32 IR is compiled at
    both fp32 and bf16. Measured on a Xeon with AMX: the bf16 load imported the fp32 blob
    and every vector came out NaN."""
    import openvino as ov

    core = ov.Core()
    config = {}
    if keep:
        shutil.rmtree(path.parent / "compiled", ignore_errors=True)  # shared by all, before
        config["CACHE_DIR"] = str(path.parent / COMPILED_DIR / f"{precision}-{hint.lower()}")
    config["PERFORMANCE_HINT"] = hint
    if HINTS[precision]:
        config["INFERENCE_PRECISION_HINT"] = HINTS[precision]
    if spec is None:
        return core.compile_model(str(path), "CPU", config)
    return core.compile_model(uint8_input(core.read_model(str(path)), spec), "CPU", config)


class StreamedTower:
    """An image tower that splits each batch across OpenVINO's throughput streams.

    One stream over all cores (the latency hint) meets its threads at every layer; streams
    of their own cores do not wait on each other. Measured on 2 cores, B/32 int8, batch 32:
    84-85 img/s against 77-80, and 75-77 against 66 beside decode work like an index run's
    (``benchmarks/README.md``). A batch smaller than the streams runs on as many streams as
    it has photos: one photo takes 28 ms on one stream where a latency-compiled model took
    16, but a second compiled model for it would hold 200 MB more for as long as the
    process lives (a watcher, the web server). Calls are serialised: the requests are shared.
    """

    def __init__(self, compiled) -> None:
        self.streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._requests = [compiled.create_infer_request() for _ in range(self.streams)]
        self._lock = threading.Lock()

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (name, x), = feeds.items()
        parts = np.array_split(x, max(1, min(self.streams, len(x))))
        requests = self._requests[:len(parts)]
        with self._lock:
            for request, part in zip(requests, parts, strict=True):
                request.start_async({name: np.ascontiguousarray(part)})
            for request in requests:
                request.wait()
            # concatenate copies the outputs out of the requests before another call reuses them
            return np.concatenate([r.get_output_tensor(0).data for r in requests])
