"""Decode an image file and turn it into the pixel tensor a model expects.

This module imports only Pillow and numpy: it runs in the indexer's decode worker processes,
which must start fast and must not carry torch's threads.

``prepare`` reproduces the checkpoint's own image processor (transformers'
``CLIPImageProcessor``): resize the shortest side with the given filter, centre-crop,
rescale to [0, 1], normalise by mean and std. The output of ``prepare`` on a decoded image is
the same computation, so its tensors match to float rounding. Decode workers stop before the
rescale (``prepare_uint8``: uint8, a quarter of the bytes) and the encoder runs ``normalise``.

SigLIP 2 NaFlex (``PreprocessSpec.patches``) reproduces ``Siglip2ImageProcessor`` instead:
each photo keeps its aspect ratio, resized to its own grid of at most ``max_num_patches``
patches, and ships as the patches in one fixed-shape array (``search.patches``).

The one approximation is JPEG draft decoding (``draft=True``): libjpeg-turbo scales a large
photo down by 1/2, 1/4 or 1/8 while decoding, keeping at least ``DRAFT_FACTOR`` times the
target size, and the resize follows, over exactly the part of the small image that the full
photo covers (its last row and column are partial). On 12 MP camera photos that is 1/8:
0.007 mean absolute difference from the checkpoint's processor on the full decode, 0.021 on
the worst of 96 photos (the bound is 0.03; benchmarks/decode.py).
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

from search import patches as naflex

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
TAG_ORIENTATION = 0x0112
# Draft decoding keeps at least this many times the target resolution, so the final
# bicubic resize still averages over at least one source pixel. 1 also drafts sub-megapixel
# photos (800x600 at 1/2 for a 224 target; 1.5 decoded them in full): decode+resize 6 -> 3.2
# ms/photo, 0.0097 mean abs diff, and the openvino int8 index 8% faster (benchmarks/README.md).
DRAFT_FACTOR = 1.0


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
    # SigLIP 2 NaFlex: (patch size, max patches). The size then follows each photo
    # (``search.patches``); resize_shortest, resize_to and crop are unused.
    patches: tuple[int, int] | None = None

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
    # float32 [3, H, W] normalised (``prepare``), or with ``decode(uint8=True)``, as decode
    # workers ship it, uint8 [3, H, W] resized and cropped (``prepare_uint8``): the encoder
    # normalises it (``normalise``) on its device. NaFlex: packed patches (``pixel_shape``).
    pixels: np.ndarray | None = None


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


def output_size(width: int, height: int, spec: PreprocessSpec) -> tuple[int, int]:
    """(width, height) after the processor's resize, before its crop."""
    if spec.patches is not None:
        out_h, out_w = naflex.target_size(height, width, *spec.patches)
        return out_w, out_h
    if spec.resize_to is not None:
        out_h, out_w = spec.resize_to
        return out_w, out_h
    if spec.resize_shortest is not None:
        # Same arithmetic as transformers' get_resize_output_image_size(default_to_square=False).
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = spec.resize_shortest, int(spec.resize_shortest * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
    return width, height


def resize(
    img: Image.Image,
    spec: PreprocessSpec,
    box: tuple[float, float, float, float] | None = None,
    full_size: tuple[int, int] | None = None,
) -> Image.Image:
    """The processor's resize (Pillow's filter on 8-bit pixels, as transformers does).

    A draft-decoded image passes the region of it that the photo covers (``box``) and the
    photo's full size, which sets the output size as the processor's would on the photo.
    """
    size = output_size(*(full_size or img.size), spec)
    if size == img.size and box is None:
        return img
    return img.resize(size, resample=spec.resample, box=box)


def centre_crop(arr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 [H, W, 3] -> the centre crop as uint8 [3, h, w], zero-padded where too small."""
    if spec.crop is not None:
        ch, cw = spec.crop
        out_h, out_w = arr.shape[:2]
        # transformers' center_crop: integer offsets, rounding the same way.
        top, left = (out_h - ch) // 2, (out_w - cw) // 2
        if top < 0 or left < 0:
            pad = np.zeros((max(ch, out_h), max(cw, out_w), 3), dtype=arr.dtype)
            pt, pl = max(0, -top), max(0, -left)
            pad[pt:pt + out_h, pl:pl + out_w] = arr
            arr, top, left = pad, max(0, top), max(0, left)
        arr = arr[top:top + ch, left:left + cw]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def pixel_shape(spec: PreprocessSpec) -> tuple[int, ...]:
    """The shape of one photo's pixels under ``spec`` (uint8 or float32 alike)."""
    if spec.patches is not None:
        patch, most = spec.patches
        return (most + 1, patch * patch * 3)
    h, w = spec.crop or spec.resize_to or (spec.target_short_side, spec.target_short_side)
    return (3, h, w)


def prepare_uint8(
    img: Image.Image,
    spec: PreprocessSpec,
    box: tuple[float, float, float, float] | None = None,
    full_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """An RGB image resized and cropped: uint8 [3, H, W], what decode workers ship (a
    quarter of float32's bytes); NaFlex: its packed patches. ``normalise`` finishes it,
    in the encoder."""
    arr = np.asarray(resize(img, spec, box, full_size))
    if spec.patches is not None:
        return naflex.pack(arr, *spec.patches)
    return centre_crop(arr, spec)


def normalise(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 [..., 3, H, W] -> the float32 tensor the model's processor makes: rescale, then
    normalise by mean and std (float32, in the processor's order, so it is bit-exact).
    NaFlex patches keep their layout (``search.patches.normalise``).
    The encoders call it on the CPU (``search.encoders.pixels.to_model_input``); on a GPU,
    ``search.encoders.pixels.normalise_tensor`` is its torch twin."""
    if spec.patches is not None:
        return naflex.normalise(pixels, spec.mean, spec.std, spec.rescale)
    x = pixels.astype(np.float32)
    x *= np.float32(spec.rescale)  # in place: the same float32 operations, no temporaries
    x -= np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
    x /= np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
    return x


def denormalise(x: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """``normalise``'s inverse, for a runtime whose image tower takes uint8: exact for what
    ``normalise`` made (its float32 error is a millionth of the half level that rounding
    forgives). Not for NaFlex patches."""
    mean = np.asarray(spec.mean, dtype=np.float64).reshape(3, 1, 1)
    std = np.asarray(spec.std, dtype=np.float64).reshape(3, 1, 1)
    levels = (x.astype(np.float64) * std + mean) / spec.rescale
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


def prepare(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """An RGB image to the float32 [3, H, W] tensor the model's processor would make
    (NaFlex: its normalised packed patches)."""
    return normalise(prepare_uint8(img, spec), spec)


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


def oriented_box(
    box: tuple[float, float, float, float], size: tuple[int, int], orientation: object
) -> tuple[float, float, float, float]:
    """``box`` (a region of an image of ``size``, anchored at its top left) after the
    transpose that EXIF ``orientation`` asks for, as ``ImageOps.exif_transpose`` does it."""
    x0, y0, x1, y1 = box
    w, h = size
    return {
        2: (w - x1, y0, w - x0, y1),  # mirrored left-right
        3: (w - x1, h - y1, w - x0, h - y0),  # turned 180 degrees
        4: (x0, h - y1, x1, h - y0),  # mirrored top-bottom
        5: (y0, x0, y1, x1),  # transposed
        6: (h - y1, x0, h - y0, x1),  # turned 90 degrees clockwise
        7: (h - y1, w - x1, h - y0, w - x0),  # transversed
        8: (y0, w - x1, y1, w - x0),  # turned 90 degrees counter-clockwise
    }.get(orientation, box)  # type: ignore[call-overload]


def decode(
    source: str | Path | bytes,
    spec: PreprocessSpec | None = None,
    *,
    max_pixels: int = 200_000_000,
    draft: bool = True,
    uint8: bool = False,
) -> Decoded:
    """Open, validate and (with a spec) preprocess one image. Raises BadImage with a reason.

    ``draft`` lets a JPEG decode at a reduced scale (the module docstring); ``uint8`` returns
    the pixels resized and cropped but not normalised (``Decoded.pixels``).
    """
    with open_image(source, max_pixels) as img:
        width, height = img.size
        fmt = img.format
        taken, camera = _exif_fields(img)
        pixels = None
        if spec is not None:
            box = None
            if draft and fmt == "JPEG":
                # Orientation may swap axes, so size the draft by the short side. NaFlex's
                # target follows the photo; it is symmetric in height and width, so the
                # un-oriented size gives the same short side.
                short = (min(output_size(width, height, spec)) if spec.patches is not None
                         else spec.target_short_side)
                want = short * DRAFT_FACTOR
                scale = min(width, height) / want
                if scale >= 2:
                    drafted = img.draft("RGB", (int(width / scale) + 1, int(height / scale) + 1))
                    box = drafted[1] if drafted else None
            img.load()
            loaded = img.size
            oriented = ImageOps.exif_transpose(img)
            if oriented.size != loaded:  # orientations 5-8 swap the axes
                width, height = height, width
            if box is not None:
                box = oriented_box(box, loaded, img.getexif().get(TAG_ORIENTATION))
            rgb = to_rgb(oriented)
            u8 = prepare_uint8(rgb, spec, box, (width, height) if box is not None else None)
            pixels = u8 if uint8 else normalise(u8, spec)
        else:
            # A full decode: it finds a truncated file, and unlike verify() it may follow
            # the EXIF read above (verify must come first after open, or PNGs raise).
            img.load()
    return Decoded(width, height, fmt, taken, camera, pixels)
