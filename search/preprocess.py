"""Decode an image file and turn it into the pixel tensor a model expects.

This module imports only Pillow and numpy: it runs in the indexer's decode worker processes,
which must start fast and must not carry torch's threads.

``prepare`` reproduces the checkpoint's own image processor (transformers'
``CLIPImageProcessor``): resize the shortest side with the given filter, centre-crop,
rescale to [0, 1], normalise by mean and std. The output of ``prepare`` on a decoded image is
the same computation, so its tensors match to float rounding. The one approximation is JPEG
draft decoding (``draft=True``): the JPEG decoder scales a large photo down by 1/2, 1/4 or 1/8
while decoding, keeping at least twice the target size, and the exact resize follows.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/AVIF when the optional pillow-heif is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - optional extra
    pass

EXIF_IFD = 0x8769
TAG_DATETIME_ORIGINAL = 36867
TAG_DATETIME = 306
TAG_MAKE = 271
TAG_MODEL = 272
# Draft decoding keeps at least this many times the target resolution, so the final
# bicubic resize still averages over several source pixels.
DRAFT_FACTOR = 2


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model's image processor does, as plain data that pickles to workers."""

    resize_shortest: int | None = 224  # shortest side to this many pixels
    resize_to: tuple[int, int] | None = None  # or an exact (height, width), as SigLIP does
    crop: tuple[int, int] | None = (224, 224)  # centre crop (height, width)
    resample: int = Image.Resampling.BICUBIC
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    rescale: float = 1 / 255

    @property
    def target_short_side(self) -> int:
        if self.resize_shortest:
            return self.resize_shortest
        if self.resize_to:
            return min(self.resize_to)
        return min(self.crop or (224, 224))


@dataclass
class Decoded:
    """A decoded image: its metadata and, when asked, its model-ready pixels."""

    width: int
    height: int
    format: str | None
    taken_at: dt.datetime | None
    camera: str | None
    pixels: np.ndarray | None = None  # float32 [3, H, W]


class BadImage(Exception):
    """A file that cannot be used as an image; the message is the reason stored for it.

    The one carrier of that reason: raised here, and passed as a value (it pickles) where
    a worker process or a thread pool reports a file back.
    """

    @classmethod
    def empty(cls) -> BadImage:
        return cls("empty file (0 bytes)")

    @classmethod
    def unreadable(cls, exc: OSError) -> BadImage:
        """The reason for a file that cannot be opened or read."""
        if isinstance(exc, FileNotFoundError):
            return cls("file disappeared before it could be read")
        if isinstance(exc, PermissionError):
            return cls("permission denied")
        return cls(f"cannot read: {exc.strerror or exc}")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode to 8-bit RGB: 16-bit greyscale is scaled, transparency goes onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def prepare(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """An RGB image to the float32 [3, H, W] tensor the model's processor would make."""
    w, h = img.size
    if spec.resize_to is not None:
        out_h, out_w = spec.resize_to
    elif spec.resize_shortest is not None:
        # Same arithmetic as transformers' get_resize_output_image_size(default_to_square=False).
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = spec.resize_shortest, int(spec.resize_shortest * long / short)
        out_w, out_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        out_h, out_w = h, w
    if (out_w, out_h) != (w, h):
        img = img.resize((out_w, out_h), resample=spec.resample)
    arr = np.asarray(img, dtype=np.float32)
    if spec.crop is not None:
        ch, cw = spec.crop
        # transformers' center_crop: integer offsets, rounding the same way.
        top, left = (out_h - ch) // 2, (out_w - cw) // 2
        if top < 0 or left < 0:
            pad = np.zeros((max(ch, out_h), max(cw, out_w), 3), dtype=np.float32)
            pt, pl = max(0, -top), max(0, -left)
            pad[pt:pt + out_h, pl:pl + out_w] = arr
            arr, top, left = pad, max(0, top), max(0, left)
        arr = arr[top:top + ch, left:left + cw]
    arr = arr * np.float32(spec.rescale)
    arr = (arr - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def _exif_fields(img: Image.Image) -> tuple[dt.datetime | None, str | None]:
    try:
        exif = img.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF never makes a photo unusable
        return None, None
    if not exif:
        return None, None
    raw = None
    try:
        raw = exif.get_ifd(EXIF_IFD).get(TAG_DATETIME_ORIGINAL)
    except Exception:  # noqa: BLE001
        raw = None
    raw = raw or exif.get(TAG_DATETIME)
    taken = None
    if isinstance(raw, str):
        try:
            taken = dt.datetime.strptime(raw.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            taken = None
    make = str(exif.get(TAG_MAKE, "") or "").strip("\x00 ")
    model = str(exif.get(TAG_MODEL, "") or "").strip("\x00 ")
    if make and model.lower().startswith(make.lower()):
        make = ""  # "Canon Canon EOS 5D" reads better as "Canon EOS 5D"
    camera = " ".join(p for p in (make, model) if p)[:128] or None
    return taken, camera


@contextmanager
def open_image(source: str | Path | bytes, max_pixels: int) -> Iterator[Image.Image]:
    """Open an image for reading, refusing bombs; every failure becomes BadImage with a reason.

    Exceptions raised while the caller reads the image inside the ``with`` block (a
    truncated file surfaces at ``load``) are turned into reasons the same way.
    """
    if isinstance(source, bytes) and not source:
        raise BadImage.empty()
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            # Pillow warns between 1x and 2x its limit and raises above: treat both as bombs.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = max_pixels
            with Image.open(stream) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise BadImage(
                        f"decompression bomb: {width}x{height} pixels is over the limit of "
                        f"{max_pixels} (indexer.max_image_pixels)"
                    )
                yield img
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (unknown or corrupt format)") from None
    except (FileNotFoundError, PermissionError) as exc:
        raise BadImage.unreadable(exc) from None
    except OSError as exc:
        reason = str(exc) or exc.__class__.__name__
        if "truncated" in reason:
            reason = f"truncated file ({reason})"
        raise BadImage(f"cannot decode: {reason}") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise BadImage(f"cannot decode: {exc.__class__.__name__}: {exc}") from None


def decode(
    source: str | Path | bytes,
    spec: PreprocessSpec | None = None,
    *,
    max_pixels: int = 200_000_000,
    draft: bool = True,
) -> Decoded:
    """Open, validate and (with a spec) preprocess one image. Raises BadImage with a reason."""
    with open_image(source, max_pixels) as img:
        width, height = img.size
        fmt = img.format
        taken, camera = _exif_fields(img)
        pixels = None
        if spec is not None:
            if draft and fmt == "JPEG":
                # Orientation may swap axes, so size the draft by the short side.
                want = spec.target_short_side * DRAFT_FACTOR
                scale = min(width, height) / want
                if scale >= 2:
                    img.draft("RGB", (int(width / scale) + 1, int(height / scale) + 1))
            img.load()
            loaded = img.size
            oriented = ImageOps.exif_transpose(img)
            if oriented.size != loaded:  # orientations 5-8 swap the axes
                width, height = height, width
            pixels = prepare(to_rgb(oriented), spec)
        else:
            # A full decode: it finds a truncated file, and unlike verify() it may follow
            # the EXIF read above (verify must come first after open, or PNGs raise).
            img.load()
    return Decoded(width, height, fmt, taken, camera, pixels)
