"""What every encoder offers: images and texts into one L2-normalised vector space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from search.preprocess import PreprocessSpec, prepare, to_rgb


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            from search.errors import ConfigError

            raise ConfigError("model.device: cuda was asked for but no CUDA GPU is available")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def l2_normalise(x: torch.Tensor) -> np.ndarray:
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
        """[N, 3, H, W] float32 from ``search.preprocess.prepare`` -> [N, dim] unit vectors."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> [N, dim] unit vectors."""

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> [N, dim] unit vectors (the exact preprocessing, no draft)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = np.stack([prepare(to_rgb(img), self.spec) for img in images])
        return self.encode_pixels(batch)
