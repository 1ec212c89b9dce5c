"""Pixel batches onto the model's device: uint8 from the decode workers, normalised there.

Decode workers ship uint8 [N, 3, H, W] (``search.preprocess.prepare_uint8``): a quarter of
float32's bytes to pickle and copy. The rescale and mean/std normalisation happen here:
on the CPU by ``search.preprocess.normalise`` itself (in place, the fastest there), on a GPU
in torch on the device, in float32 and in the same order, so the tensor is the one the
checkpoint's processor makes. SigLIP 2 NaFlex ships packed
patches (``search.patches``), unpacked here into what Siglip2Model takes.
"""

from __future__ import annotations

import numpy as np
import torch

from search import patches as naflex
from search.preprocess import PreprocessSpec, normalise


def normalise_tensor(
    x: torch.Tensor, spec: PreprocessSpec, channels: tuple[int, ...] = (3, 1, 1)
) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32, on x's device: the torch twin of ``normalise``.
    ``channels``: the shape mean and std take against x, (3,) when the channel is x's last
    axis (NaFlex patches)."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(channels)
    std = torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(channels)
    rescale = torch.tensor(spec.rescale, dtype=torch.float32, device=x.device)
    return (x.float() * rescale - mean) / std


def _to_device(pixels: np.ndarray, device: str) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(pixels))
    if device.startswith("cuda"):
        # From pinned memory the copy is a DMA that overlaps the CPU; from pageable memory
        # it is synchronous and staged through a driver buffer.
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def to_model_input(
    pixels: np.ndarray, spec: PreprocessSpec, device: str, dtype: torch.dtype
) -> torch.Tensor | dict[str, torch.Tensor]:
    """[N, 3, H, W] uint8 (normalised here) or float32 already normalised (``prepare``) ->
    the model's input tensor on ``device`` in ``dtype``. NaFlex: the keyword arguments of
    Siglip2Model's ``get_image_features`` (``search.encoders.clip.image_forward``)."""
    if spec is not None and spec.patches is not None:
        return _naflex_input(pixels, spec, device, dtype)
    if device == "cpu" and pixels.dtype == np.uint8:
        # numpy in place: the same float32 values, 2 ms for 32 photos at 224 px where
        # torch's out-of-place ops took 12-26 ms on 2 cores.
        return torch.from_numpy(normalise(pixels, spec)).to(dtype)
    x = _to_device(pixels, device)
    if x.dtype == torch.uint8:
        x = normalise_tensor(x, spec)
    return x.to(dtype)


def _naflex_input(
    pixels: np.ndarray, spec: PreprocessSpec, device: str, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Packed patches -> pixel_values, pixel_attention_mask, spatial_shapes; uint8 patches
    normalised per channel as ``search.patches.normalise`` does, padding rows zeroed."""
    patches, mask, shapes = naflex.unpack(pixels)  # the header, read on the CPU
    x = _to_device(patches, device)
    m = _to_device(mask, device)
    if x.dtype == torch.uint8:
        # A patch is [p*p, 3] flattened: the channel is its last axis.
        y = normalise_tensor(x.view(*x.shape[:-1], -1, 3), spec, channels=(3,))
        x = y.view(x.shape) * m[..., None]
    return {"pixel_values": x.to(dtype), "pixel_attention_mask": m,
            "spatial_shapes": _to_device(shapes, device)}
