import numpy as np
import pytest
from PIL import Image

from search.encoders import ALIASES, canonical_model_id, load_encoder
from search.encoders.offline import MODEL_ID as OFFLINE_ID
from search.errors import ModelLoadError
from search.evaluation.metrics import retrieval_metrics
from search.preprocess import decode


def test_tiny_clip_loads_through_the_real_path_with_the_openai_tokenizer(tiny_clip, tiny_clip_dir):
    assert tiny_clip.model_id == str(tiny_clip_dir.resolve())
    ids = tiny_clip.tokenizer("a photo of a cat")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tiny_clip.dim == 32


def test_clip_outputs_are_unit_vectors(tiny_clip, samples):
    texts = tiny_clip.encode_texts(["a cat", "a very long query " * 100])  # truncated to 77
    images = tiny_clip.encode_images([Image.open(p.path) for p in samples[:3]])
    for vecs in (texts, images):
        assert vecs.dtype == np.float32
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert images.shape == (3, 32) and texts.shape == (2, 32)


def test_openai_aliases_name_hub_ids():
    assert ALIASES["ViT-B/32"] == "openai/clip-vit-base-patch32"
    assert ALIASES["ViT-L/14@336px"] == "openai/clip-vit-large-patch14-336"
    assert canonical_model_id("ViT-B/16") == "openai/clip-vit-base-patch16"
    assert canonical_model_id("offline") == OFFLINE_ID
    # What the aliases are for: vectors tagged with the hub id, and `bench --compare`
    # finding OpenAI's published numbers for a model named the way OpenAI names it.
    from search.evaluation.published import published

    for alias in ALIASES:
        assert published(canonical_model_id(alias), "flickr30k"), alias
        assert published(canonical_model_id(alias), "coco"), alias


def test_unreachable_hub_model_is_one_clear_line():
    with pytest.raises(ModelLoadError) as err:
        load_encoder("ViT-B/32")  # not cached; HF_HUB_OFFLINE=1 in conftest
    message = str(err.value)
    assert "cannot load model 'openai/clip-vit-base-patch32'" in message
    assert "--model offline" in message and "\n" not in message


def test_folder_without_a_checkpoint_is_one_clear_line(tmp_path):
    with pytest.raises(ModelLoadError, match="must hold a transformers CLIP checkpoint"):
        load_encoder(str(tmp_path))


def test_offline_vectors_share_one_384d_space(offline, samples):
    img = offline.encode_images([Image.open(samples[0].path)])
    txt = offline.encode_texts(["a cat"])
    assert img.shape == txt.shape == (1, 384)
    assert np.allclose(np.linalg.norm(img), 1, atol=1e-5)


# Photos whose subject ImageNet's classes cover, with captions written for this test (not
# the ones in sample_photos.tsv), the way a person would type them.
CAPTIONS = {
    "chelsea_cat": "my cat sitting on the floor",
    "espresso_cup": "a cup of coffee",
    "yamaha_motorcycle": "a motorbike",
    "mandrill_face": "a monkey with a colourful face",
    "swallowtail_butterfly": "butterfly",
    "happy_dog": "a small fluffy dog",
    "single_orange": "an orange",
    "squirrel_on_branch": "a squirrel in a tree",
    "soccer_kick": "football match",
    "launch_pad_rocket": "a space rocket before launch",
    "lone_apple": "a green apple",
    "cameraman_tripod": "a man with a camera on a tripod",
    "sound_card_pcb": "electronics circuit board",
    "blurry_car": "a car on the road",
    "summer_palace_pagoda": "a pagoda by a lake",
    "peach_dahlia": "an orange flower",
}


@pytest.mark.slow  # encodes a caption set or every label
def test_offline_backend_finds_the_right_photo_for_most_captions(offline, samples):
    gallery = [p for p in samples]
    names = [p.name for p in gallery]
    captions = [(c, names.index(n)) for n, c in CAPTIONS.items() if n in names]
    assert len(captions) >= 7  # 7 photos without Debian's opencv-doc, 16 with it
    pixels = np.stack([decode(p.path.read_bytes(), offline.spec).pixels for p in gallery])
    images = offline.encode_pixels(pixels)
    texts = offline.encode_texts([c for c, _ in captions])
    firsts = (texts @ images.T).argmax(axis=1)
    hits = [c for (c, i), top in zip(captions, firsts, strict=True) if top == i]
    assert len(hits) / len(captions) > 0.6, f"only {hits} ranked their photo first"


@pytest.mark.slow  # encodes a caption set or every label
def test_offline_backend_on_the_sample_caption_set(offline, samples):
    """All photos, all three captions each (docs/architecture.md: R@1 0.52 on 29 photos)."""
    pixels = np.stack([decode(p.path.read_bytes(), offline.spec).pixels for p in samples])
    captions = [(c, i) for i, p in enumerate(samples) for c in p.captions]
    both = retrieval_metrics(
        offline.encode_texts([c for c, _ in captions]),
        offline.encode_pixels(pixels),
        [i for _, i in captions],
    )
    # Measured R@1 0.56 / 0.62 and R@5 0.83 / 0.78 (text->image / image->text) on the 37
    # photos with opencv-doc; with fewer photos ranking is easier.
    for direction in ("text_to_image", "image_to_text"):
        m = both[direction]
        assert m["R@1"] >= 0.45 and m["R@5"] >= 0.7, (direction, m)


@pytest.mark.slow  # encodes a caption set or every label
def test_offline_label_vectors_cache_matches_a_fresh_computation(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = offline._label_vectors()  # computed and written
    assert len(list((tmp_path / "pixseek").glob("offline-labels-*.npy"))) == 1
    np.testing.assert_array_equal(offline._label_vectors(), first)  # read back
    np.testing.assert_allclose(first, offline.label_vectors, atol=1e-5)


def test_folder_saved_the_way_transformers_saves_a_clip_processor_loads(tiny_clip_dir, tmp_path,
                                                                         tiny_clip, samples):
    """CLIPProcessor.save_pretrained writes processor_config.json and no
    preprocessor_config.json; transformers resolves either, so pixseek must too."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path / "saved"
    CLIPModel.from_pretrained(tiny_clip_dir).save_pretrained(folder)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor.from_pretrained(tiny_clip_dir),
                              tokenizer=CLIPTokenizer.from_pretrained(tiny_clip_dir))
    processor.save_pretrained(folder)
    assert not (folder / "preprocessor_config.json").exists()

    encoder = load_encoder(str(folder), device="cpu")
    assert encoder.spec == tiny_clip.spec
    image = [Image.open(samples[0].path)]
    assert np.allclose(encoder.encode_images(image), tiny_clip.encode_images(image), atol=1e-5)
