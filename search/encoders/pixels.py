"""Pixel batches onto the model's device: uint8 from the decode workers, normalised there.

Decode workers ship uint8 [N, 3, H, W] (``search.preprocess.prepare_uint8``): a quarter of
float32's bytes to pickle and copy. The rescale and mean/std normalisation happen here, on
the model's device, in float32 and in the same order as ``search.preprocess.normalise``, so
the tensor is the one the checkpoint's processor makes.
"""

from __future__ import annotations

import numpy as np
import torch

from search.preprocess import PreprocessSpec


def normalise_tensor(x: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32, on x's device: the torch twin of ``normalise``."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    rescale = torch.tensor(spec.rescale, dtype=torch.float32, device=x.device)
    return (x.float() * rescale - mean) / std


def to_model_input(
    pixels: np.ndarray, spec: PreprocessSpec, device: str, dtype: torch.dtype
) -> torch.Tensor:
    """[N, 3, H, W] uint8 (normalised here) or float32 already normalised (``prepare``) ->
    the model's input tensor on ``device`` in ``dtype``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels))
    if device.startswith("cuda"):
        # From pinned memory the copy is a DMA that overlaps the CPU; from pageable memory
        # it is synchronous and staged through a driver buffer.
        x = x.pin_memory().to(device, non_blocking=True)
    else:
        x = x.to(device)
    if x.dtype == torch.uint8:
        x = normalise_tensor(x, spec)
    return x.to(dtype)
