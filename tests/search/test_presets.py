"""Model presets (``--model fast | best | multilingual``, ``pixseek models``) and SigLIP 2
through the real loading path, with random tiny models (the hub is out of reach)."""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from search.encoders import canonical_model_id, load_encoder, resolve_name
from search.encoders.presets import PRESETS, preset_for, recommendation
from search.errors import ModelLoadError
from search.preprocess import decode


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    """Fixed-resolution SigLIP 2 (SiglipModel, SiglipImageProcessor, GemmaTokenizer)."""
    from benchmarks.model_presets import build_random_siglip

    return build_random_siglip(tmp_path_factory.mktemp("siglip2-fixed"), naflex=False)


@pytest.fixture(scope="module")
def naflex_dir(tmp_path_factory):
    """SigLIP 2 NaFlex (Siglip2Model, Siglip2ImageProcessor)."""
    from benchmarks.model_presets import build_random_siglip

    return build_random_siglip(tmp_path_factory.mktemp("siglip2-naflex"), naflex=True)


def run_cli(monkeypatch, capsys, tmp_path, argv: list[str]) -> tuple[int, str, str]:
    """``pixseek ARGV`` through the console script's ``main``, in process."""
    from pixseek.cli import main

    monkeypatch.setattr(sys, "argv", ["pixseek", *argv])
    monkeypatch.delenv("PIXSEEK_CONFIG", raising=False)
    monkeypatch.setenv("PIXSEEK_INDEXER_DECODE_WORKERS", "0")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_presets_resolve_to_their_hub_ids_wherever_a_model_name_is_taken():
    assert canonical_model_id("fast") == "openai/clip-vit-base-patch32"
    assert canonical_model_id("best") == "google/siglip2-base-patch16-256"
    assert canonical_model_id("multilingual") == "google/siglip-base-patch16-256-multilingual"
    assert resolve_name("ViT-B/32") == canonical_model_id("fast")  # one index for both
    assert resolve_name("org/other") == "org/other"
    assert preset_for("google/siglip2-base-patch16-256").name == "best"


def test_a_folder_named_like_a_preset_is_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "best").mkdir()
    assert canonical_model_id("best") == str((tmp_path / "best").resolve())


def test_every_published_figure_names_where_it_comes_from():
    for preset in PRESETS.values():
        assert preset.published, preset.name
        for figure in preset.published:
            assert figure.source, (preset.name, figure.metric)
            if figure.value is None:
                assert "not published" in figure.source
    fast, best = PRESETS["fast"], PRESETS["best"]
    # The published figures the presets cite, as search/evaluation/published.py holds them.
    from search.evaluation.published import published

    assert published(fast.hub_id, "flickr30k")["text_to_image"]["R@1"] == pytest.approx(0.5878)
    assert {f.value for f in fast.published} >= {58.8, 30.4}
    assert {f.value for f in best.published} >= {53.2, 79.1}
    # open_clip's table, the row of the same i18n B/16 256 weights.
    assert {f.value for f in PRESETS["multilingual"].published} == {72.2, 44.9}


def test_uncached_preset_is_one_line_naming_the_preset_and_its_hub_id():
    with pytest.raises(ModelLoadError) as err:
        load_encoder("best", device="cpu")  # not cached; HF_HUB_OFFLINE=1 in conftest
    message = str(err.value)
    assert "cannot load model 'google/siglip2-base-patch16-256' (preset best)" in message
    assert "\n" not in message


def test_uncached_preset_through_the_cli_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, tmp_path,
                           ["--data-dir", str(tmp_path / "d"), "--model", "best",
                            "search", "a cat"])
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err  # a model that cannot load: a failure (1)
    assert "'google/siglip2-base-patch16-256' (preset best)" in lines[0]
    assert "Traceback" not in err


def test_model_fast_indexes_and_searches_from_the_local_cache_and_shares_the_hub_id_index(
        hf_cache, library, monkeypatch, capsys, tmp_path):
    data = str(tmp_path / "data")
    code, out, err = run_cli(monkeypatch, capsys, tmp_path,
                             ["--data-dir", data, "--model", "fast", "--precision", "fp32",
                              "index", str(library), "--json"])
    assert code == 0, err
    assert json.loads(out)["encoded"] == 12
    # The same vectors answer --model <hub id>: nothing is encoded again.
    code, out, err = run_cli(monkeypatch, capsys, tmp_path,
                             ["--data-dir", data, "--model", "openai/clip-vit-base-patch32",
                              "--precision", "fp32", "index", str(library), "--json"])
    assert code == 0 and json.loads(out)["encoded"] == 0, err
    code, out, err = run_cli(monkeypatch, capsys, tmp_path,
                             ["--data-dir", data, "--model", "fast", "status", "--json"])
    assert code == 0, err
    info = json.loads(out)
    assert info["model"] == "openai/clip-vit-base-patch32"
    assert list(info["models"]) == ["openai/clip-vit-base-patch32"]
    code, out, err = run_cli(monkeypatch, capsys, tmp_path,
                             ["--data-dir", data, "--model", "fast", "--precision", "fp32",
                              "search", "a cat", "-k", "3", "--json"])
    assert code == 0, err
    assert len(json.loads(out)) == 3


def test_pixseek_models_lists_presets_cache_state_and_a_recommendation(
        hf_cache, monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, ["models", "--json"])
    assert code == 0, err
    report = json.loads(out)
    rows = {r["name"]: r for r in report["presets"]}
    assert list(rows) == ["fast", "best", "multilingual"]
    assert rows["fast"]["hub_id"] == "openai/clip-vit-base-patch32"
    assert rows["fast"]["downloaded"] is True  # the hf_cache fixture put it there
    assert rows["best"]["downloaded"] is False
    assert report["recommendation"] == recommendation()
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, ["models"])
    assert code == 0, err
    assert "google/siglip2-base-patch16-256" in out and "53.2" in out
    assert out.strip().splitlines()[-1].startswith("CPU only: ")


# SigLIP 2 through the real path ---------------------------------------------------------


def _reference_images(encoder, images):
    """The checkpoint's own image processor and get_image_features, unit vectors."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(encoder.model_id)
    with torch.inference_mode():
        out = encoder.model.get_image_features(**processor(images=images, return_tensors="pt"))
    out = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(out, dim=-1).numpy()


def test_fixed_resolution_siglip2_loads_like_the_published_checkpoint(siglip_dir):
    encoder = load_encoder(str(siglip_dir), device="cpu", precision="fp32")
    assert type(encoder.model).__name__ == "SiglipModel" and encoder.model_type == "siglip"
    assert encoder.naflex is None
    assert encoder.spec.resize_to == (256, 256) and encoder.spec.crop is None
    assert encoder.spec.mean == (0.5, 0.5, 0.5) and encoder.spec.resample == 2  # bilinear
    assert encoder.max_text_tokens == 64


def test_fixed_resolution_siglip2_matches_its_processor_on_real_photos(siglip_dir, samples):
    encoder = load_encoder(str(siglip_dir), device="cpu", precision="fp32")
    images = [Image.open(p.path).convert("RGB") for p in samples]
    cosines = (encoder.encode_images(images) * _reference_images(encoder, images)).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_siglip2_text_is_lowercased_and_max_length_padded_as_trained(siglip_dir):
    """SigLIP 2 was trained on lower-cased text, 64 tokens; its GemmaTokenizer keeps case."""
    encoder = load_encoder(str(siglip_dir), device="cpu", precision="fp32")
    tok = encoder.tokenizer
    assert "Gemma" in type(tok).__name__
    assert tok("A Cat")["input_ids"] != tok("a cat")["input_ids"]  # the tokenizer keeps case
    texts = ["A Photo of a CAT on the Beach", "un chat"]
    ours = encoder.encode_texts(texts)
    ids = tok([t.lower() for t in texts], padding="max_length", max_length=64,
              truncation=True, return_tensors="pt")["input_ids"]
    assert ids.shape == (2, 64)
    with torch.inference_mode():
        out = encoder.model.get_text_features(input_ids=ids)
    out = out if isinstance(out, torch.Tensor) else out.pooler_output
    ref = torch.nn.functional.normalize(out, dim=-1).numpy()
    assert (ours * ref).sum(axis=1).min() >= 0.999
    assert np.allclose(encoder.encode_texts(["a photo of a cat"]),
                       encoder.encode_texts(["A PHOTO OF A CAT"]), atol=1e-6)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.slow  # many photo shapes through two models
def test_naflex_siglip2_matches_its_processor_on_photos_of_any_shape(naflex_dir, samples):
    """Each photo keeps its aspect ratio on its own patch grid, as Siglip2ImageProcessor
    does: whole photos, extreme crops (3:1, 1:4), a tiny one, and camera-size JPEGs that
    the draft decode shrinks while decoding."""
    encoder = load_encoder(str(naflex_dir), device="cpu", precision="fp32")
    assert type(encoder.model).__name__ == "Siglip2Model"
    assert encoder.naflex == (16, 256) and encoder.spec.patches == (16, 256)
    assert encoder.spec.resize_to is None and encoder.spec.crop is None
    blobs = []
    for p in samples:
        blobs.append(p.path.read_bytes())
        img = Image.open(p.path).convert("RGB")
        w, h = img.size
        blobs += [_jpeg(img.crop((0, 0, w, w // 3))), _jpeg(img.crop((0, 0, h // 4, h)))]
    blobs.append(_jpeg(img.resize((20, 30))))
    blobs += [_jpeg(img.resize((3000, 2000))), _jpeg(img.resize((900, 3600)))]
    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]
    reference = _reference_images(encoder, images)
    cosines = (encoder.encode_images(images) * reference).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    for draft in (False, True):
        pixels = np.stack([decode(b, encoder.spec, draft=draft, uint8=True).pixels
                           for b in blobs])
        cosines = (encoder.encode_pixels(pixels) * reference).sum(axis=1)
        assert cosines.min() >= 0.999, (draft, cosines)


def test_naflex_siglip2_indexes_and_searches_photos_end_to_end(
        naflex_dir, library, monkeypatch, capsys, tmp_path):
    data = str(tmp_path / "data")
    base = ["--data-dir", data, "--model", str(naflex_dir), "--precision", "fp32"]
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, [*base, "index", str(library),
                                                             "--json"])
    assert code == 0, err
    assert json.loads(out)["encoded"] == 12
    code, out, err = run_cli(monkeypatch, capsys, tmp_path,
                             [*base, "search", "a photo of a cat", "-k", "5", "--json"])
    assert code == 0, err
    results = json.loads(out)
    assert len(results) == 5 and all(Path(r["path"]).exists() for r in results)
    # Query by example: a library photo finds itself first.
    photo = next(library.iterdir())
    code, out, err = run_cli(monkeypatch, capsys, tmp_path,
                             [*base, "search", "--image", str(photo), "-k", "1", "--json"])
    assert code == 0, err
    assert Path(json.loads(out)[0]["path"]).name == photo.name


def test_doctor_checks_the_preset_hub_id_in_the_cache(hf_cache, monkeypatch, capsys, tmp_path):
    for name, cached in (("fast", True), ("best", False)):
        _, out, err = run_cli(monkeypatch, capsys, tmp_path,
                              ["--data-dir", str(tmp_path / "d"), "--model", name,
                               "doctor", "--json"])
        model = next(r for r in json.loads(out) if r["check"] == "model")
        assert f"{name} = {PRESETS[name].hub_id}" in model["detail"], model
        assert ("not in the local Hugging Face cache" in model["detail"]) is not cached
        assert model["status"] == ("ok" if cached else "FAIL"), model  # HF_HUB_OFFLINE=1
