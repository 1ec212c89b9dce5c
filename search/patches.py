"""SigLIP 2 NaFlex pixels: a photo as a grid of patches, in one fixed-shape array.

Imports only numpy: it runs in the decode worker processes (``search.preprocess``).

Siglip2ImageProcessor resizes each photo, keeping its aspect ratio, to the largest grid of
whole patches with at most ``max_num_patches`` of them (``target_size``), flattens it to
patches and pads them to ``max_num_patches`` rows. The grid differs per photo, but every
caller stacks one fixed shape per model, so a photo's pixels are one array

    [max_num_patches + 1, patch * patch * 3]

row 0: a header, its first four values the grid's height and width (gh, gw), two bytes
each, high byte first (a grid can be 1 x 256); the rest of the row is zero.
rows 1 .. gh*gw: the patches in row-major grid order, each patch [patch, patch, 3] flattened
(the processor's ``convert_image_to_patches``); rows after them: zero.

uint8 as decode workers ship it, or float32 normalised (``normalise``: the header keeps its
byte values, the padding rows stay zero). ``pack`` and ``unpack`` are the only code that
knows where the header's bytes are.
"""

from __future__ import annotations

import math

import numpy as np


def target_size(height: int, width: int, patch: int, most: int) -> tuple[int, int]:
    """(height, width) Siglip2ImageProcessor resizes a photo to: a binary search on the
    scale (eps 1e-5) for the largest multiple-of-``patch`` size of at most ``most``
    patches, at least one patch a side (transformers' get_image_size_for_max_num_patches).
    Symmetric: swapping height and width swaps the answer."""

    def side(scale: float, size: int) -> int:
        return max(patch, math.ceil(size * scale / patch) * patch)

    eps = 1e-5
    low, high = eps / 10, 100.0
    while high - low >= eps:
        scale = (low + high) / 2
        if (side(scale, height) / patch) * (side(scale, width) / patch) <= most:
            low = scale
        else:
            high = scale
    return side(low, height), side(low, width)


def pack(image: np.ndarray, patch: int, most: int) -> np.ndarray:
    """An image [H, W, 3] (H and W multiples of ``patch``, at most ``most`` patches) ->
    the layout above, in the image's dtype."""
    h, w, c = image.shape
    gh, gw = h // patch, w // patch
    out = np.zeros((most + 1, patch * patch * c), dtype=image.dtype)
    out[0, :4] = (gh >> 8, gh & 255, gw >> 8, gw & 255)
    grid = image.reshape(gh, patch, gw, patch, c).transpose(0, 2, 1, 3, 4)
    out[1 : 1 + gh * gw] = grid.reshape(gh * gw, -1)
    return out


def unpack(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[..., most + 1, p*p*3] (uint8 or float) -> what Siglip2Model takes: the patches
    [..., most, p*p*3] (a view), the patch mask int32 [..., most] (1 for a photo's
    patches) and the grid shapes int64 [..., 2] (its ``spatial_shapes``)."""
    head = pixels[..., 0, :4].astype(np.int64)
    shapes = np.stack([head[..., 0] * 256 + head[..., 1], head[..., 2] * 256 + head[..., 3]],
                      axis=-1)
    patches = pixels[..., 1:, :]
    count = shapes[..., :1] * shapes[..., 1:]
    mask = (np.arange(patches.shape[-2]) < count).astype(np.int32)
    return patches, mask, shapes


def normalise(pixels: np.ndarray, mean, std, rescale: float) -> np.ndarray:
    """uint8 packed pixels -> float32 in the same layout: each patch rescaled, then
    normalised per channel (the last axis of a patch's [p*p, 3]) in the processor's order;
    the padding rows zero, as the processor pads after normalising."""
    out = pixels.astype(np.float32)
    patches, mask, _ = unpack(out)
    x = patches.reshape(*patches.shape[:-1], -1, 3) * np.float32(rescale)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    patches[...] = x.reshape(patches.shape) * mask[..., None]  # a view: writes into out
    return out
