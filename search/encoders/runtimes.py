"""Where a CLIP runs on the CPU: ``model.runtime: auto | torch | onnxruntime | openvino``.

- ``torch`` runs the checkpoint as loaded, at ``model.precision`` (``search.encoders.precision``).
- ``onnxruntime`` and ``openvino`` run its image and text towers exported once
  (``search.encoders.exported``), at the precisions below. ``int8`` is the runtime's dynamic
  quantisation; ``int8-static`` is post-training quantisation calibrated on the library's own
  photos (ONNX Runtime's QDQ, NNCF for OpenVINO); ``bf16`` is OpenVINO's bf16 inference
  hint, its default on CPUs with bf16 in hardware.
- ``auto`` chooses the pair (``search.encoders.runtime_choice``).

torch stays the CUDA and MPS path: the exported runtimes run on the CPU only.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

from search.errors import ConfigError, DependencyError

RUNTIMES = ("torch", "onnxruntime", "openvino")
EXPORTED = ("onnxruntime", "openvino")
# The pip extra that brings each exported runtime.
EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}
# The modules each exported runtime needs (the ONNX export needs onnx itself).
MODULES = {"onnxruntime": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino")}
PRECISIONS = {
    "onnxruntime": ("fp32", "int8", "int8-static"),
    "openvino": ("fp32", "bf16", "int8-static"),
}
# Static int8 on OpenVINO needs NNCF besides openvino.
STATIC_MODULES = {"onnxruntime": (), "openvino": ("nncf",)}


def missing(runtime: str, precision: str | None = None) -> str | None:
    """The first module ``runtime`` (at ``precision``) needs that is not installed, or None.
    Found, not imported: onnx and nncf take a second to import, and a cached export needs
    neither (they load when an export or a calibration does)."""
    mods = MODULES.get(runtime, ())
    if precision == "int8-static":
        mods = mods + STATIC_MODULES.get(runtime, ())
    for mod in mods:
        try:
            if importlib.util.find_spec(mod) is None:  # None too for a blocked sys.modules entry
                return mod
        except (ImportError, ValueError):
            return mod
    return None


def available(runtime: str, precision: str | None = None) -> bool:
    return runtime == "torch" or missing(runtime, precision) is None


def require(runtime: str, precision: str | None = None) -> None:
    """A ``DependencyError`` naming the extra when ``runtime`` cannot run here."""
    mod = missing(runtime, precision)
    if mod is not None:
        extra = EXTRAS[runtime]
        raise DependencyError(
            f"model.runtime {runtime} needs the '{extra}' extra ({mod} is not installed): "
            f"pip install 'pixseek[{extra}]'"
        )


def version(runtime: str) -> str:
    """The runtime's package version: part of every export's cache key."""
    dist = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}[runtime]
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def check_name(runtime: str) -> None:
    """A ConfigError when ``runtime`` is not a ``model.runtime`` setting."""
    if runtime not in ("auto", *RUNTIMES):
        raise ConfigError(f"model.runtime: '{runtime}' is not one of auto, " + ", ".join(RUNTIMES))


def check(runtime: str, precision: str, device: str) -> None:
    """A ConfigError when ``runtime`` cannot run ``precision`` on ``device``."""
    if runtime == "torch":
        return
    if device != "cpu":
        raise ConfigError(
            f"model.runtime: {runtime} runs on the CPU here; on {device} use torch or auto"
        )
    if precision not in PRECISIONS[runtime]:
        raise ConfigError(
            f"model.precision: {precision} is not available on {runtime}; it runs "
            + ", ".join(PRECISIONS[runtime])
        )


def label(runtime: str, precision: str) -> str:
    return f"{runtime} {precision}"


def parse(pair: str) -> tuple[str, str]:
    """``"openvino int8-static"`` -> (runtime, precision); a bare precision is torch's."""
    runtime, _, precision = pair.partition(" ")
    return (runtime, precision) if precision else ("torch", runtime)


def default_for(precision: str) -> str:
    """``runtime: auto`` with an explicit precision: torch when it runs that precision, else
    the exported runtime that does (int8-static: OpenVINO, the faster one, else ONNX Runtime)."""
    if precision != "int8-static":
        return "torch"
    order = ("openvino", "onnxruntime")
    return next((r for r in order if available(r, precision)), "onnxruntime")
