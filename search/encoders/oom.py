"""What running out of accelerator memory does, at model load and at every encode.

- **Encode**: a batch that runs out of memory is retried in halves, recursively; the size
  that worked becomes this encoder's cap, so the next batches are split up front instead of
  failing first (an OOM costs a full forward pass and a cache flush). One item that still
  does not fit is one ``ResourceError`` line naming ``model.batch_size`` and the device.
- **Load**: a model that does not fit on the GPU loads on the CPU under ``device: auto``,
  with a warning (log and stderr); an explicit ``device: cuda`` is one ``ResourceError``.

Memory is freed outside the ``except`` block: the traceback holds the failed batch's
activations until the block ends.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from search.errors import ResourceError, first_line

log = logging.getLogger(__name__)

T = TypeVar("T")

# What allocators say when they run out (cuBLAS and MPS raise a plain RuntimeError).
_MESSAGES = ("out of memory", "can't allocate memory", "CUBLAS_STATUS_ALLOC_FAILED")


def is_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # not imported: no torch allocator ran out
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _MESSAGES)


def free_cache(device: str) -> None:
    """Give the allocator's cached blocks back, so the retry starts from a clean pool."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:  # an exported runtime on the CPU: nothing cached by torch
        return
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "mps" and getattr(torch, "mps", None) is not None:
        try:
            torch.mps.empty_cache()
        except RuntimeError:  # no MPS in this build
            pass


class Splitter:
    """One encoder's OOM policy: split a batch that does not fit, remember what fits."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.cap: int | None = None  # the largest batch known to fit, once one did not

    def run(self, encode: Callable[[Any], np.ndarray], items: Any, what: str) -> np.ndarray:
        """``encode(items)``, in parts that fit. ``items``: an array or a list of ``what``s."""
        n = len(items)
        if self.cap is not None and n > self.cap:
            parts = [self._run(encode, items[i:i + self.cap], what)
                     for i in range(0, n, self.cap)]
            return np.concatenate(parts)
        return self._run(encode, items, what)

    def _run(self, encode: Callable[[Any], np.ndarray], items: Any, what: str) -> np.ndarray:
        n = len(items)
        failed = None
        try:
            return encode(items)
        except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_oom(exc):
                raise
            failed = first_line(exc)[:200]
        free_cache(self.device)
        if n <= 1:
            raise ResourceError(
                f"out of memory on {self.device} encoding a single {what} ({failed}): the "
                f"model does not fit beside what else holds that memory; lower "
                f"model.batch_size, close other programs using the {self.device} device, "
                "or set model.device: cpu"
            )
        half = (n + 1) // 2
        if self.cap is None or half < self.cap:
            self.cap = half
            log.warning(
                "out of memory on %s encoding %d %ss; retrying in batches of %d "
                "(set model.batch_size to at most %d to skip the retries)",
                self.device, n, what, half, half,
            )
        return np.concatenate([self._run(encode, items[:half], what),
                               self._run(encode, items[half:], what)])


def splitter(encoder: Any) -> Splitter:
    """The encoder's ``Splitter``, made on first use (kept on the encoder)."""
    found = encoder.__dict__.get("_oom_splitter")
    if found is None or found.device != encoder.device:
        found = encoder.__dict__["_oom_splitter"] = Splitter(encoder.device)
    return found


def encode_in_parts(
    encoder: Any, encode: Callable[[Any], np.ndarray], items: Any, what: str
) -> np.ndarray:
    """What ``encode_pixels`` / ``encode_texts`` call: ``encode(items)`` under the policy."""
    if not isinstance(items, np.ndarray):
        items = list(items)
    return splitter(encoder).run(encode, items, what)


def load_with_fallback(load: Callable[[str], T], device: str) -> T:
    """``load(device)``; when the model does not fit: the CPU under ``auto`` (a warning),
    else one ``ResourceError`` line."""
    failed = None
    try:
        return load(device)
    except RuntimeError as exc:
        if not is_oom(exc):
            raise
        failed = first_line(exc)[:200]
    import torch

    free_cache("cuda" if torch.cuda.is_available() else "mps")
    if device == "auto":
        message = (f"the model does not fit in accelerator memory ({failed}); loading it on "
                   "the CPU instead (slower; set model.device: cpu to skip the attempt)")
        log.warning("%s", message)
        print(f"warning: {message}", file=sys.stderr)
        return load("cpu")
    raise ResourceError(
        f"model.device: {device}: the model does not fit in its memory ({failed}); free the "
        "device (other programs), use a smaller model, or set model.device: cpu or auto"
    )

