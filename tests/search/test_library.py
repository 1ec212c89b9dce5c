"""A library remembers its model; the relevance reference is built when a model is indexed;
the offline text tower in plain torch gives transformers' vectors."""

from __future__ import annotations

import numpy as np
import pytest

from search.config import load_config
from search.engine import Engine
from search.errors import InputError


def test_who_chose_the_model(tmp_path):
    assert not load_config(environ={}).model_chosen
    assert load_config(overrides={"model.name": "offline"}, environ={}).model_chosen
    assert load_config(environ={"PIXSEEK_MODEL": "offline"}).model_chosen
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: offline\n")
    assert load_config(cfg, environ={}).model_chosen
    cfg.write_text("model:\n  device: cpu\n")
    assert not load_config(cfg, environ={}).model_chosen


def test_a_library_keeps_its_first_model_and_builds_its_reference(
        tmp_path, monkeypatch, library, tiny_clip, tiny_clip_dir):
    from indexer.session import open_indexer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = str(tmp_path / "data")
    named = load_config(overrides={"data_dir": data, "model.name": str(tiny_clip_dir)},
                        environ={})
    with open_indexer(named, encoder=tiny_clip) as indexer:
        indexer.index([str(library)])
    # Built at index time, so the first search does not pay for it.
    assert list((tmp_path / "cache" / "pixseek").glob("relevance-*.npz"))
    plain = load_config(overrides={"data_dir": data}, environ={})  # config's default model
    with Engine(plain) as engine:
        assert engine.model_id == tiny_clip.model_id
        assert engine.vectors.count == 12
    other = load_config(overrides={"data_dir": data, "model.name": "offline"}, environ={})
    with Engine(other) as engine, pytest.raises(InputError) as err:
        from search import query

        engine.search(query.build("a cat"))
    message = str(err.value)
    assert f"no vectors for the model offline; it has {tiny_clip.model_id} (12 photos)" in message
    assert "pixseek --model offline index FOLDER" in message


def test_minilm_in_numpy_matches_transformers(offline):
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = offline.text_model_folder
    texts = ["a cat", "A Dog, with its TONGUE out!", "crème brûlée 東京 " + "word " * 300, ""]
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    tokens = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        want = model(**tokens).last_hidden_state.numpy()
    got, mask = offline.text_model.hidden(texts)
    np.testing.assert_array_equal(mask, tokens["attention_mask"].numpy())
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-5)
