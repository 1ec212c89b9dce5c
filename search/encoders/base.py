"""What every encoder offers: images and texts into one L2-normalised vector space."""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from search.preprocess import PreprocessSpec, prepare_uint8, to_rgb

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: importing the Encoder interface (the engine, status,
# the web UI's modules) must not cost torch's second.


def _mps_available() -> bool:
    if sys.platform != "darwin":  # MPS is Apple's: no need to import torch to say no
        return False
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(device: str = "auto") -> str:
    """``auto`` -> cuda, mps or cpu; an explicit accelerator that is not there is one
    ConfigError now, not a raw torch error at the first ``.to(device)``."""
    if device != "auto":
        from search.errors import ConfigError

        if device == "cuda" and not _cuda_available():
            raise ConfigError("model.device: cuda was asked for but no CUDA GPU is available")
        if device == "mps" and not _mps_available():
            raise ConfigError(
                "model.device: mps was asked for but this machine has no MPS (Apple silicon "
                "GPU with a torch built for it); use auto or cpu"
            )
        return device
    if _cuda_available():
        return "cuda"
    if _mps_available():
        return "mps"
    return "cpu"


# A GPU torch could use leaves one of these on Linux: NVIDIA's driver (also inside
# containers), a Jetson's integrated GPU, AMD's ROCm (torch.cuda on HIP), or WSL's bridge.
GPU_DEVICE_FILES = (
    "/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0",
    "/dev/nvhost-ctrl-gpu", "/dev/nvmap",
    "/dev/kfd", "/dev/dxg",
)


def no_gpu_device() -> bool:
    """A Linux machine without any of ``GPU_DEVICE_FILES``: no GPU torch could use."""
    return sys.platform.startswith("linux") and not any(map(os.path.exists, GPU_DEVICE_FILES))


def _cuda_available() -> bool:
    """torch's answer, but without importing torch (a second) where ``no_gpu_device``:
    ``pixseek status`` resolves ``device: auto`` through here."""
    if no_gpu_device():
        return False
    import torch

    return torch.cuda.is_available()


def l2_normalise(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32 (as torch's ``normalize``: norms floored at 1e-12)."""
    if isinstance(x, np.ndarray):  # an exported runtime's features: no torch needed
        x = x.astype(np.float32, copy=False)
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.float32(1e-12))
    import torch

    x = x.float()
    return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)


class Encoder(ABC):
    """A loaded model. ``model_id`` tags every vector it makes (architecture invariant 2)."""

    model_id: str
    dim: int
    spec: PreprocessSpec
    device: str
    # CLIP's learned temperature is ~100; zero-shot classification uses softmax(scale * cos).
    logit_scale: float = 100.0
    # The numeric precision the model runs at (search.encoders.precision), and why.
    precision: str = "fp32"
    precision_reason: str = "this model runs in fp32"

    @abstractmethod
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """[N, 3, H, W] -> [N, dim] unit vectors. uint8 pixels (``prepare_uint8``, what decode
        workers ship) are normalised on the model's device; float32 ones are taken as already
        normalised (``search.preprocess.prepare``)."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> [N, dim] unit vectors."""

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> [N, dim] unit vectors (the exact preprocessing, no draft)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = np.stack([prepare_uint8(to_rgb(img), self.spec) for img in images])
        return self.encode_pixels(batch)
