"""The fast image path against the checkpoint's own processor, at the pixel-tensor level.

Random-weight towers barely react to their input, so an embedding comparison would prove
nothing: the tensors themselves are compared (docs/architecture.md: Models).
"""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.encoders.clip import spec_from_processor_config
from search.preprocess import BadImage, PreprocessSpec, decode, normalise, prepare, to_rgb


@pytest.fixture(scope="module")
def reference(tiny_clip_dir):
    # transformers' PIL image processor for the checkpoint (the torchvision one needs
    # torchvision, which the CPU torch build here cannot import).
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil.from_pretrained(tiny_clip_dir)


def reference_pixels(reference, img: Image.Image) -> np.ndarray:
    return reference(images=img, return_tensors="np")["pixel_values"][0]


def test_spec_reads_the_checkpoint_processor_config(tiny_clip):
    spec = tiny_clip.spec
    assert (spec.resize_shortest, spec.crop, spec.resample) == (224, (224, 224), 3)
    assert spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_siglip_style_config_resizes_to_a_square_without_crop():
    spec = spec_from_processor_config(
        {"size": {"height": 384, "width": 384}, "do_center_crop": False,
         "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2}
    )
    assert (spec.resize_to, spec.crop, spec.resize_shortest) == ((384, 384), None, None)
    out = prepare(Image.new("RGB", (640, 480), (255, 0, 0)), spec)
    assert out.shape == (3, 384, 384)
    assert out[0].mean() == pytest.approx(1.0) and out[1].mean() == pytest.approx(-1.0)


def test_fast_path_matches_clip_image_processor_on_real_photos(samples, tiny_clip, reference):
    for photo in samples:
        ours = decode(photo.path.read_bytes(), tiny_clip.spec, draft=False).pixels
        with Image.open(photo.path) as img:
            theirs = reference_pixels(reference, img.convert("RGB"))
        assert ours.shape == theirs.shape == (3, 224, 224)
        mad = float(np.abs(ours - theirs).mean())
        assert mad < 0.01, f"{photo.name}: mean abs difference {mad:.4f}"


@pytest.mark.parametrize("size", [(640, 427), (427, 640), (4000, 10), (10, 4000),
                                  (20, 30), (512, 512), (37, 1000)])
def test_naflex_patches_match_siglip2_image_processor(samples, size):
    """Per photo grid, patch layout, mask and padding as Siglip2ImageProcessor makes them:
    4000 x 10 is a 1 x 256 grid (a side over 255 patches needs the header's two bytes)."""
    from transformers.models.siglip2.image_processing_pil_siglip2 import (
        Siglip2ImageProcessorPil,
    )

    from search.patches import target_size, unpack
    from search.preprocess import pixel_shape, prepare_uint8

    config = {"max_num_patches": 256, "patch_size": 16, "resample": 2,
              "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    spec = spec_from_processor_config(config)
    assert spec.patches == (16, 256) and pixel_shape(spec) == (257, 768)
    img = Image.open(samples[0].path).convert("RGB").resize(size)
    theirs = Siglip2ImageProcessorPil(**config)(images=img, return_tensors="np")
    grid = tuple(theirs["spatial_shapes"][0])
    assert tuple(n // 16 for n in target_size(size[1], size[0], 16, 256)) == grid
    ours = decode(encode(img, "PNG"), spec, draft=False).pixels
    assert ours.shape == pixel_shape(spec) and ours.dtype == np.float32
    for pixels in (ours, normalise(prepare_uint8(img, spec), spec), prepare(img, spec)):
        patches, mask, shapes = unpack(pixels)
        assert tuple(shapes) == grid
        np.testing.assert_array_equal(mask, theirs["pixel_attention_mask"][0])
        mad = float(np.abs(patches - theirs["pixel_values"][0]).mean())
        assert mad <= 0.03, f"{size}: mean abs difference {mad:.4f}"
        assert not patches[mask == 0].any()  # padding is zero after normalising
    if size == (4000, 10):
        assert grid == (1, 256)


@pytest.mark.slow  # camera-size photos
def test_jpeg_draft_on_camera_size_photos_stays_within_003(tmp_path, tiny_clip, reference):
    from benchmarks.photos import make_benchmark_photos

    photos = make_benchmark_photos(tmp_path, count=8, long_side=4000)
    worst = 0.0
    for path in photos:
        data = path.read_bytes()
        fast = decode(data, tiny_clip.spec, draft=True).pixels
        exact = decode(data, tiny_clip.spec, draft=False).pixels
        with Image.open(path) as img:
            from PIL import ImageOps

            theirs = reference_pixels(reference, ImageOps.exif_transpose(img).convert("RGB"))
        assert float(np.abs(exact - theirs).mean()) < 0.01
        worst = max(worst, float(np.abs(fast - theirs).mean()))
    assert worst < 0.03, f"draft decoding differs by {worst:.4f}"


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# A solid image in each mode, and the RGB colour a viewer shows for it.
SOLID = {
    "RGB": ((200, 30, 30), (200, 30, 30)),
    "CMYK": ((0, 255, 255, 0), (255, 0, 0)),  # no cyan, full magenta and yellow: red
    "L": (128, (128, 128, 128)),
    "P": (None, (30, 60, 200)),  # a palette image of one blue entry
    "RGBA": ((200, 30, 30, 255), (200, 30, 30)),
    "LA": ((128, 0), (255, 255, 255)),  # fully transparent: onto white
    "1": (1, (255, 255, 255)),
}


@pytest.mark.parametrize(
    ("mode", "fmt", "extra"),
    [
        ("RGB", "JPEG", {}),
        ("CMYK", "JPEG", {}),
        ("L", "PNG", {}),
        ("P", "PNG", {}),
        ("RGBA", "PNG", {}),
        ("LA", "PNG", {}),
        ("I;16", "PNG", {}),
        ("1", "BMP", {}),
        ("RGB", "WEBP", {}),
        ("RGB", "TIFF", {}),
        ("RGB", "GIF", {"save_all": True}),
    ],
)
def test_formats_and_modes_decode_to_the_model_tensor(tiny_clip, mode, fmt, extra):
    """Every mode and format becomes the colour a viewer shows, normalised for the model."""
    spec = tiny_clip.spec
    if mode == "I;16":
        # A 16-bit ramp over the full range: scaled to 8 bits, its mean is mid-grey.
        img = Image.fromarray(
            np.linspace(0, 65535, 300 * 200).reshape(200, 300).astype(np.uint16))
        rgb = (127.5, 127.5, 127.5)
    elif mode == "P":
        img = Image.new("P", (300, 200), 0)
        img.putpalette([30, 60, 200] + [0, 0, 0] * 255)
        rgb = SOLID["P"][1]
    else:
        colour, rgb = SOLID[mode]
        img = Image.new(mode, (300, 200), colour)
    out = decode(encode(img, fmt, **extra), spec)
    assert out.pixels.shape == (3, 224, 224) and out.pixels.dtype == np.float32
    assert (out.width, out.height, out.format) == (300, 200, fmt)
    expected = (np.array(rgb) / 255 - np.array(spec.mean)) / np.array(spec.std)
    # JPEG and GIF are lossy: a few levels of 255 (0.06 in normalised units).
    assert out.pixels.mean(axis=(1, 2)) == pytest.approx(expected, abs=0.06), mode


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_when_pillow_heif_is_installed(tiny_clip, fmt):
    pytest.importorskip("pillow_heif")
    img = Image.new("RGB", (320, 240), (200, 30, 30))
    out = decode(encode(img, fmt), tiny_clip.spec)
    assert out.pixels.shape == (3, 224, 224) and (out.width, out.height) == (320, 240)
    assert out.pixels[0].mean() > 1  # still red


def test_sixteen_bit_grey_is_scaled_not_clipped():
    arr = np.full((10, 10), 32768, dtype=np.uint16)  # mid grey in 16 bits
    rgb = to_rgb(Image.fromarray(arr))
    assert rgb.getpixel((0, 0)) == (128, 128, 128)


def test_transparent_pixels_go_onto_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_gif_uses_the_first_frame(tiny_clip):
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    px = decode(buf.getvalue(), tiny_clip.spec).pixels
    assert px[0].mean() > 1 and px[2].mean() < 0  # red, not blue


def test_exif_orientation_is_applied(tiny_clip):
    # Stored landscape, left half red; orientation 6 = rotate 90 degrees clockwise to view,
    # so the viewer sees a portrait with the red half on top.
    img = Image.new("RGB", (400, 200), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 200, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0110] = "Test Camera"
    exif[0x010F] = "ACME"
    out = decode(encode(img, "JPEG", exif=exif.tobytes()), tiny_clip.spec, draft=False)
    assert (out.width, out.height) == (200, 400)
    assert out.camera == "ACME Test Camera"
    red = out.pixels[0]
    assert red[:50].mean() > red[-50:].mean() + 1


def test_exif_capture_time(tiny_clip):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2021:07:04 18:30:00"
    data = encode(Image.new("RGB", (64, 64)), "JPEG", exif=exif.tobytes())
    assert decode(data, tiny_clip.spec).taken_at.isoformat() == "2021-07-04T18:30:00"


def bad_corpus(tmp_path: Path, sample: Path) -> dict[str, bytes]:
    jpeg = encode(Image.open(sample).convert("RGB"), "JPEG")
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")  # 400 Mpx in a few kilobytes
    return {
        "empty.jpg": b"",
        "text.png": b"this is not an image at all\n" * 10,
        "random.jpg": bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "bomb.png": bomb,
        "header-only.png": encode(Image.new("RGB", (50, 50)), "PNG")[:40],
    }


def test_bad_files_raise_badimage_with_a_reason(tmp_path, samples, tiny_clip):
    reasons = {}
    for name, data in bad_corpus(tmp_path, samples[0].path).items():
        with pytest.raises(BadImage) as err:
            decode(data, tiny_clip.spec)
        reasons[name] = str(err.value)
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert "not an image" in reasons["text.png"]
    assert "not an image" in reasons["random.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert reasons["header-only.png"]


def test_decode_without_a_spec_checks_the_whole_file(tmp_path):
    """Metadata only (no model input): any format decodes, a truncated one is refused."""
    import io

    from search.preprocess import BadImage, decode

    for fmt in ("PNG", "JPEG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, fmt)
        decoded = decode(buf.getvalue())
        assert (decoded.width, decoded.height, decoded.format, decoded.pixels) == (
            64, 48, fmt, None)
        with pytest.raises(BadImage, match="truncated|cannot decode"):
            decode(buf.getvalue()[: len(buf.getvalue()) // 2])


# The uint8 transfer: workers ship resized, cropped uint8; the encoder normalises it.


def test_uint8_pixels_normalise_to_exactly_the_float_tensor(samples, tiny_clip):
    import torch

    from search.encoders.pixels import normalise_tensor

    spec = tiny_clip.spec
    for photo in samples[:6]:
        data = photo.path.read_bytes()
        u8 = decode(data, spec, uint8=True).pixels
        assert u8.dtype == np.uint8 and u8.shape == (3, 224, 224)
        floats = decode(data, spec).pixels
        assert np.array_equal(normalise(u8, spec), floats), photo.name
        on_torch = normalise_tensor(torch.from_numpy(u8), spec).numpy()
        assert np.abs(on_torch - floats).max() <= 1e-6, photo.name


@pytest.mark.parametrize("which", ["tiny_clip", "offline", "siglip"])
def test_denormalise_recovers_every_level_exactly(request, which):
    """A runtime whose tower takes uint8 gets a normalised batch back to its exact levels."""
    from search.preprocess import denormalise

    spec = (PreprocessSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) if which == "siglip"
            else request.getfixturevalue(which).spec)
    levels = np.broadcast_to(np.arange(256, dtype=np.uint8), (2, 3, 4, 256)).copy()
    levels[1] = levels[1, :, :, ::-1]  # each channel sees every level, in either order
    back = denormalise(normalise(levels, spec), spec)
    assert back.dtype == np.uint8 and np.array_equal(back, levels)


@pytest.mark.parametrize("which", ["tiny_clip", "offline"])
def test_encoders_take_uint8_or_normalised_float32_alike(request, samples, which):
    """Same vectors from the uint8 the workers ship as from the float32 of ``prepare``, for
    both encoders (their normalisations differ: CLIP's mean/std, EfficientNet's 127/128)."""
    encoder = request.getfixturevalue(which)
    u8 = np.stack([decode(p.path.read_bytes(), encoder.spec, uint8=True).pixels
                   for p in samples[:4]])
    from_u8 = encoder.encode_pixels(u8)
    from_float = encoder.encode_pixels(normalise(u8, encoder.spec))
    assert from_u8.shape == from_float.shape == (4, encoder.dim)
    assert np.abs(from_u8 - from_float).max() < 1e-5
    # A batch of different photos gives different vectors: the check above can fail.
    assert np.abs(from_u8[0] - from_u8[1]).max() > 1e-3


def test_decode_workers_ship_uint8(tmp_path, samples, tiny_clip):
    from indexer.decode import DecodeJob, content_hash, run_decode_job

    path = samples[0].path
    job = DecodeJob(str(path), content_hash(str(path)), tiny_clip.spec, 10**8, True)
    result = run_decode_job(job)
    assert result.pixels.dtype == np.uint8 and result.pixels.shape == (3, 224, 224)


# Draft decoding: the resize covers exactly what the photo covers, in every orientation.


@pytest.mark.slow  # camera-size photos
def test_draft_decoding_of_camera_photos_stays_within_003_and_keeps_metadata(
        tmp_path, tiny_clip, reference):
    """Camera photos (one in ten EXIF-rotated, sizes not multiples of 8): draft and exact
    decodes agree on metadata, and the draft tensor stays within the bound."""
    from PIL import ImageOps

    from benchmarks.photos import make_benchmark_photos

    photos = make_benchmark_photos(tmp_path, count=10, long_side=4000)
    worst = 0.0
    for path in photos:
        data = path.read_bytes()
        with Image.open(path) as img:
            theirs = reference_pixels(reference, ImageOps.exif_transpose(img).convert("RGB"))
        fast = decode(data, tiny_clip.spec, draft=True, uint8=True)
        exact = decode(data, tiny_clip.spec, draft=False)
        assert (fast.width, fast.height, fast.taken_at, fast.camera, fast.format) == (
            exact.width, exact.height, exact.taken_at, exact.camera, exact.format)
        worst = max(worst, float(np.abs(normalise(fast.pixels, tiny_clip.spec) - theirs).mean()))
    assert worst < 0.03, f"draft decoding differs by {worst:.4f}"


def _stripes(width: int, height: int) -> Image.Image:
    """Hard stripes both ways and a diagonal ramp: any shift, mirror or turn shows."""
    yy, xx = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack(
        [((xx // 37) % 2) * 255, ((yy // 29) % 2) * 255, (xx + yy) % 256], -1).astype(np.uint8))


@pytest.mark.slow  # camera-size photos
def test_draft_decoding_follows_every_exif_orientation(tiny_clip):
    """4003 x 2701 decodes at 1/8 to 501 x 338, whose last row and column are partial; in
    each orientation the draft tensor is as close to the exact one as unrotated (a box
    left in stored coordinates misplaces it by 0.17 or more, or fails)."""
    base = _stripes(4003, 2701)
    diffs = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = encode(base, "JPEG", quality=95, exif=exif.tobytes())
        fast = decode(data, tiny_clip.spec, uint8=True)
        exact = decode(data, tiny_clip.spec, draft=False)
        assert (fast.width, fast.height) == (exact.width, exact.height) == (
            (2701, 4003) if orientation >= 5 else (4003, 2701))
        diffs[orientation] = float(np.abs(normalise(fast.pixels, tiny_clip.spec)
                                          - exact.pixels).mean())
    assert max(diffs.values()) < 0.06, diffs
    assert max(diffs.values()) - min(diffs.values()) < 0.01, diffs


def test_oriented_box_is_the_transposed_region():
    """The box table against Pillow's own transposes: a marked region lands in the box."""
    from PIL import ImageOps

    from search.preprocess import oriented_box

    size, box = (40, 30), (0, 0, 25, 18)
    for orientation in range(1, 9):
        img = Image.new("L", size, 0)
        img.paste(255, box)
        exif = img.getexif()
        exif[0x0112] = orientation
        shown = np.asarray(ImageOps.exif_transpose(img))
        x0, y0, x1, y1 = oriented_box(box, size, orientation)
        assert shown[y0:y1, x0:x1].min() == 255 and shown.sum() == 255 * 25 * 18, orientation


@pytest.mark.parametrize(
    ("mode", "colour", "extra"),
    [
        ("CMYK", (0, 255, 255, 0), {}),  # red, through Pillow's CMYK conversion
        ("L", 90, {}),
        ("RGB", (30, 160, 70), {"progressive": True}),
        ("RGB", (30, 160, 70), {"subsampling": 0}),  # 4:4:4 chroma
    ],
)
def test_cmyk_greyscale_and_progressive_jpegs(tiny_clip, reference, mode, colour, extra):
    """Camera-size JPEGs of every kind draft-decode close to the processor's tensor."""
    img = Image.new(mode, (2403, 1801), colour)
    img.paste(Image.new(mode, (600, 450), 0 if mode == "L" else (0,) * len(colour)),
              (900, 675))  # a dark centre, so the comparison sees structure
    data = encode(img, "JPEG", quality=92, **extra)
    out = decode(data, tiny_clip.spec)
    with Image.open(io.BytesIO(data)) as shown:
        theirs = reference_pixels(reference, shown.convert("RGB"))
    assert (out.width, out.height, out.format) == (2403, 1801, "JPEG")
    assert float(np.abs(out.pixels - theirs).mean()) < 0.03, mode


def test_corrupt_and_oversized_camera_jpegs_give_reasons(tiny_clip):
    """Draft-decoded JPEGs fail with reasons too; the bomb check comes before decoding."""
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).resize((2000, 1500))
    data = encode(big, "JPEG")
    garbage = data[:2000] + bytes(rng.integers(0, 256, len(data) - 4000, dtype=np.uint8))
    with pytest.raises(BadImage, match="truncated"):
        decode(data[: len(data) // 2], tiny_clip.spec)
    with pytest.raises(BadImage, match="cannot decode"):
        decode(garbage + data[-2000:], tiny_clip.spec)
    with pytest.raises(BadImage, match="decompression bomb"):
        decode(data, tiny_clip.spec, max_pixels=1_000_000)
    assert decode(data, tiny_clip.spec).pixels.shape == (3, 224, 224)
