"""A CLIP's towers on ONNX Runtime or OpenVINO: exported once per checkpoint, cached.

``load_towers`` returns ``Towers`` for one (runtime, precision) pair. The fp32 ONNX export
is the base every variant is made from (``search.encoders.onnx_export``); the int8 variants
and OpenVINO's IR are folders of their own beside it, each named with the version of what
made it (``search.encoders.export_cache``). Static int8 is calibrated once, when its folder
is built, on the photos ``calibration`` returns (the library's, else the sample photos).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.encoders import export_cache, runtimes
from search.encoders.export_cache import read_text_inputs
from search.preprocess import PreprocessSpec, denormalise, normalise

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 10  # photos per calibration step


@dataclass
class Calibration:
    """Real inputs to calibrate static int8 on: normalised pixels and tokenised captions."""

    pixels: np.ndarray  # float32 [N, 3, H, W]
    texts: list[dict[str, np.ndarray]]  # one feed per caption batch
    source: str  # where the photos came from, for the record

    def image_feeds(self) -> list[dict[str, np.ndarray]]:
        n = CALIBRATION_BATCH
        return [{"pixel_values": self.pixels[i:i + n]} for i in range(0, len(self.pixels), n)]


class Towers:
    """The image and text towers on one runtime: numpy in, raw features out.

    ``image`` takes pixels as ``Encoder.encode_pixels`` does: uint8 (what decode workers
    ship) or float32 already normalised. ``uint8_tower``: the image tower itself takes uint8
    and normalises inside (OpenVINO, ``openvino_runtime.uint8_input``); otherwise uint8
    pixels are normalised here first.
    """

    def __init__(self, runtime: str, precision: str, folder: Path, image: Callable,
                 text: Callable, text_inputs: list[str], spec: PreprocessSpec | None = None,
                 uint8_tower: bool = False) -> None:
        self.runtime, self.precision, self.folder = runtime, precision, folder
        self._image, self._text, self.text_inputs = image, text, text_inputs
        self.spec, self.uint8_tower = spec, uint8_tower

    def image(self, pixels: np.ndarray) -> np.ndarray:
        if self.uint8_tower:
            if pixels.dtype != np.uint8:  # normalised float32: back to the exact levels
                pixels = denormalise(pixels, self.spec)
            return self._image({"pixel_values": np.ascontiguousarray(pixels)})
        if pixels.dtype == np.uint8:
            pixels = normalise(pixels, self.spec)
        return self._image({"pixel_values": np.ascontiguousarray(pixels, dtype=np.float32)})

    def text(self, tokens: dict[str, np.ndarray]) -> np.ndarray:
        return self._text({k: np.asarray(tokens[k], dtype=np.int64) for k in self.text_inputs})


def _ort_towers(runtime: str, precision: str, folder: Path, spec: PreprocessSpec) -> Towers:
    from search.encoders.onnx_export import ort_session

    img, txt = ort_session(folder / "image.onnx"), ort_session(folder / "text.onnx")
    return Towers(runtime, precision, folder, lambda f: img.run(None, f)[0],
                  lambda f: txt.run(None, f)[0], read_text_inputs(folder), spec)


def _ov_towers(runtime: str, precision: str, folder: Path, meta: Path, keep: bool,
               spec: PreprocessSpec) -> Towers:
    from search.encoders.openvino_runtime import StreamedTower, compile_tower

    img = StreamedTower(compile_tower(folder / "image.xml", precision, keep, spec=spec,
                                      hint="THROUGHPUT"))
    txt = compile_tower(folder / "text.xml", precision, keep)  # queries: one at a time
    return Towers(runtime, precision, folder, img, lambda f: txt(f)[0],
                  read_text_inputs(meta), spec, uint8_tower=True)


def load_towers(
    model: Callable[[], object],
    model_type: str,
    image_side: tuple[int, int],
    source: str,
    runtime: str,
    precision: str,
    spec: PreprocessSpec,
    calibration: Callable[[], Calibration] | None = None,
    cache_dir: str | Path | None = None,
    keep_compiled: bool = True,
) -> Towers:
    """The towers of ``model()`` (the fp32 torch model loaded from ``source``, called only
    to export it: a cached export needs no torch model) on ``runtime`` at ``precision``, its
    pixels preprocessed by ``spec``, exported and cached on first use. ``keep_compiled``:
    OpenVINO also caches its compiled towers (a faster next load, and as much disk again as
    the weights): not for the pairs ``runtime: auto`` only measures."""
    from search.encoders import onnx_export, openvino_runtime  # torch only to export
    from search.encoders.precision import torch_version

    runtimes.require(runtime, precision)
    t0 = time.perf_counter()
    home = export_cache.checkpoint_home(source, cache_dir)
    base = home / f"onnx-torch{torch_version()}"  # torch's version, without importing it

    def export(out: Path) -> None:
        log.warning("exporting %s to ONNX once (cached in %s)", source, home)
        onnx_export.export_towers(model(), model_type, image_side, out)

    export_cache.build_once(base, export)
    calib: list[Calibration] = []

    def calibrated() -> Calibration:
        if not calib:
            if calibration is None:
                raise RuntimeError("int8-static needs calibration photos")
            calib.append(calibration())
            log.warning("calibrating int8-static on %d photos (%s)",
                        len(calib[0].pixels), calib[0].source)
        return calib[0]

    version = runtimes.version(runtime)
    if runtime == "onnxruntime":
        if precision == "fp32":
            return export_cache.load_or_rebuild(
                base, export, lambda f: _ort_towers(runtime, precision, f, spec))
        folder = home / f"onnxruntime{version}-{precision}"
        if precision == "int8":
            def build(out: Path) -> None:
                onnx_export.quantize_dynamic(base, out)
        else:
            def build(out: Path) -> None:
                c = calibrated()
                onnx_export.quantize_static(base, out, c.image_feeds(), c.texts)
        towers = export_cache.load_or_rebuild(
            folder, build, lambda f: _ort_towers(runtime, precision, f, spec))
    else:
        ir = home / f"openvino{version}-fp32"

        def ov_towers(folder: Path) -> Towers:
            return _ov_towers(runtime, precision, folder, base, keep_compiled, spec)

        def convert(out: Path) -> None:
            openvino_runtime.convert(base, out)

        if precision in ("fp32", "bf16"):
            towers = export_cache.load_or_rebuild(ir, convert, ov_towers)
        else:
            export_cache.build_once(ir, convert)
            folder = home / f"openvino{version}-{precision}"

            def build(out: Path) -> None:
                c = calibrated()
                openvino_runtime.quantize_static(ir, out, c.image_feeds(), c.texts)

            towers = export_cache.load_or_rebuild(folder, build, ov_towers)
    log.info("%s %s towers ready in %.2f s", runtime, precision, time.perf_counter() - t0)
    return towers
