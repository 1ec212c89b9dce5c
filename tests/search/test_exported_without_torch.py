"""A CLIP whose towers are exported runs in a new process without torch or transformers: its
checkpoint facts and tokenizer are saved beside the exports (search.encoders.checkpoint_facts)
and give the same tokens and vectors as the process that read the checkpoint."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from search.encoders import checkpoint_facts, load_encoder
from search.encoders.text_tokens import TextTokenizer
from search.preprocess import decode

ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "a cat", "", "  Two DOGS   playing\tin the snow!! ", "a very long " + "word " * 100,
    "<|endoftext|> inside", "<pad> <bos> <eos> <unk>", "émigré café naïve", "東京の夜景",
    "🐈 on a 🚲", "it's 5 o'clock", "A",
]


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    """Fixed-resolution SigLIP 2 with the Gemma tokenizer its checkpoints ship."""
    from benchmarks.model_presets import build_random_siglip

    return build_random_siglip(tmp_path_factory.mktemp("siglip2"), naflex=False)


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """A user cache of the test's own: the exports, the saved facts and the choices."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize(("model", "padding", "length"),
                         [("clip", True, 77), ("siglip", "max_length", 64)])
def test_the_saved_tokenizer_gives_transformers_ids(tiny_clip_dir, siglip_dir, tmp_path,
                                                    model, padding, length):
    folder = tiny_clip_dir if model == "clip" else siglip_dir
    tokenizer = AutoTokenizer.from_pretrained(folder)
    call = {"padding": padding, "truncation": True, "max_length": length}
    TextTokenizer.capture(tokenizer, call).save(tmp_path)
    saved = TextTokenizer.load(tmp_path)
    for batch in (TEXTS, TEXTS[:1], TEXTS[1:3], [TEXTS[3]], [t.lower() for t in TEXTS]):
        want = tokenizer(list(batch), return_tensors="np", **call)
        got = saved(batch)
        for key in ("input_ids", "attention_mask"):
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} of {batch}")
    assert saved(TEXTS)["input_ids"].shape[1] == length  # the long one, truncated


def _photos(samples, spec):
    return np.stack([decode(p.path, spec, uint8=True).pixels for p in samples[:4]])


CHILD = """
import json, sys
import numpy as np
from search.encoders import load_encoder
enc = load_encoder({model!r}, device="cpu", precision={precision!r}, runtime={runtime!r})
pixels = np.load({pixels!r})
np.save({out!r} + "-images.npy", enc.encode_pixels(pixels))
np.save({out!r} + "-texts.npy", enc.encode_texts({texts!r}))
print(json.dumps({{"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "runtime": enc.runtime, "precision": enc.precision, "dim": enc.dim}}))
"""


@pytest.mark.parametrize(("model", "runtime", "precision"), [
    ("clip", "openvino", "fp32"), ("clip", "onnxruntime", "int8"),
    ("siglip", "openvino", "fp32"),
])
def test_a_new_process_runs_the_exported_towers_without_torch(
    tiny_clip_dir, siglip_dir, samples, user_cache, tmp_path, model, runtime, precision
):
    folder = str(tiny_clip_dir if model == "clip" else siglip_dir)
    first = load_encoder(folder, device="cpu", precision=precision, runtime=runtime)
    pixels = _photos(samples, first.spec)
    texts = [p.captions[0] for p in samples[:4]] + ["A Red Bike in the SNOW"]
    want_images, want_texts = first.encode_pixels(pixels), first.encode_texts(texts)
    np.save(tmp_path / "pixels.npy", pixels)
    out = str(tmp_path / "second")
    code = CHILD.format(model=folder, precision=precision, runtime=runtime,
                        pixels=str(tmp_path / "pixels.npy"), out=out, texts=texts)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert second == {"torch": False, "transformers": False, "runtime": runtime,
                      "precision": precision, "dim": first.dim}
    np.testing.assert_allclose(np.load(out + "-images.npy"), want_images, atol=1e-6)
    np.testing.assert_allclose(np.load(out + "-texts.npy"), want_texts, atol=1e-6)


def test_damaged_facts_are_read_again_with_one_warning(tiny_clip_dir, user_cache, caplog):
    first = load_encoder(str(tiny_clip_dir), device="cpu", precision="fp32", runtime="openvino")
    want = first.encode_texts(["a cat on a sofa"])
    (facts,) = user_cache.glob("pixseek/exports/*/facts*-transformers*/facts.json")
    facts.write_text("{half a")
    caplog.set_level(logging.WARNING)
    again = load_encoder(str(tiny_clip_dir), device="cpu", precision="fp32", runtime="openvino")
    warnings = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warnings) == 1
    np.testing.assert_allclose(again.encode_texts(["a cat on a sofa"]), want, atol=1e-6)
    assert json.loads(facts.read_text())["model_type"] == "clip"  # saved again, whole
    assert checkpoint_facts.load(str(tiny_clip_dir)) is not None


def test_an_encoder_from_saved_facts_still_offers_the_transformers_tokenizer(
    tiny_clip_dir, user_cache
):
    # fine-tuning trains and saves the transformers tokenizer
    load_encoder(str(tiny_clip_dir), device="cpu", precision="fp32", runtime="openvino")
    enc = load_encoder(str(tiny_clip_dir), device="cpu", precision="fp32", runtime="openvino")
    assert enc._text_tokens is not None and enc._tokenizer is None
    ids = enc.tokenizer(["a cat"], padding=True, return_tensors="np")["input_ids"]
    np.testing.assert_array_equal(enc.token_arrays(["a cat"])["input_ids"], ids)


def test_torch_runtime_saves_nothing(tiny_clip_dir, user_cache):
    load_encoder(str(tiny_clip_dir), device="cpu", precision="fp32", runtime="torch")
    assert not list(user_cache.glob("pixseek/exports/*/facts*"))


def test_a_hub_checkpoint_is_found_without_transformers(hf_cache, user_cache, tmp_path):
    # the `fast` preset's hub id, from the Hugging Face cache (huggingface_hub finds it)
    first = load_encoder("fast", device="cpu", precision="fp32", runtime="openvino")
    want = first.encode_texts(["a red bike in the snow"])
    code = ("import json, sys\n"
            "from search.encoders import load_encoder\n"
            "enc = load_encoder('fast', device='cpu', precision='fp32', runtime='openvino')\n"
            "vec = enc.encode_texts(['a red bike in the snow'])\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'id': enc.model_id,"
            " 'vec': vec[0].tolist()}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (second["torch"], second["id"]) == (False, first.model_id)
    np.testing.assert_allclose(second["vec"], want[0], atol=1e-6)


OFFLINE_CHILD = """
import json, sys
import numpy as np
from search.encoders import load_encoder
texts = load_encoder("offline", device="cpu").encode_texts({texts!r})  # runtime torch
after_text = "torch" in sys.modules
images = load_encoder("offline", device="cpu", runtime="onnxruntime").encode_pixels(
    np.load({pixels!r}))
print(json.dumps({{"after_text": after_text, "after_images": "torch" in sys.modules,
                  "texts": texts.tolist(), "images": images.tolist()}}))
"""


def test_the_offline_model_searches_text_without_torch(offline, samples, tmp_path):
    # Its text tower runs in numpy; its classifier, exported, on ONNX Runtime (the export is
    # made here first, in the user's cache as a user's first run makes it).
    pixels = _photos(samples, offline.spec)
    texts = [p.captions[0] for p in samples[:3]]
    want_images = load_encoder("offline", device="cpu", runtime="onnxruntime").encode_pixels(
        pixels)
    np.save(tmp_path / "pixels.npy", pixels)
    code = OFFLINE_CHILD.format(texts=texts, pixels=str(tmp_path / "pixels.npy"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (got["after_text"], got["after_images"]) == (False, False)
    np.testing.assert_allclose(got["texts"], offline.encode_texts(texts), atol=1e-6)
    np.testing.assert_allclose(got["images"], want_images, atol=1e-6)
