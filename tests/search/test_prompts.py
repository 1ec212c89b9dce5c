"""Prompt ensembles for zero-shot classification (``classify --templates``), real encoders."""

from __future__ import annotations

import json
import subprocess
from importlib import resources

import numpy as np
import pytest

from search.errors import InputError
from search.prompts import BATCH_SIZE, label_embeddings, load_templates
from tests import cli


def pixseek(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """The command as a person runs it, in ``tmp_path``."""
    return cli.pixseek(tmp_path / "data", *args, check=False, cwd=tmp_path, timeout=120)


def by_hand(encoder, labels, templates) -> np.ndarray:
    """The CLIP notebook's recipe, one label at a time."""
    out = []
    for label in labels:
        vecs = encoder.encode_texts([t.replace("{}", label) for t in templates])
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        mean = vecs.mean(axis=0)
        out.append(mean / np.linalg.norm(mean))
    return np.stack(out)


def test_the_data_file_holds_openais_80_templates():
    text = (resources.files("search") / "data" / "imagenet_templates.txt").read_text("utf-8")
    assert text.startswith("# OpenAI CLIP's ImageNet prompt templates")
    templates = load_templates("imagenet")
    assert len(templates) == 80 and len(set(templates)) == 80
    assert all(t.count("{}") == 1 for t in templates)
    assert templates[0] == "a bad photo of a {}." and templates[-1] == "a tattoo of the {}."


def test_no_templates_is_the_labels_as_they_are(tiny_clip):
    labels = ["a cat", "a dog"]
    assert load_templates(None) is None
    assert np.array_equal(label_embeddings(tiny_clip, labels, None),
                          tiny_clip.encode_texts(labels))


def test_ensemble_is_the_normalised_mean_of_normalised_embeddings(tiny_clip, offline):
    # 4 labels x 80 templates = 320 texts: more than one batch.
    labels, templates = ["cat", "dog", "sports car", "espresso"], load_templates("imagenet")
    assert len(labels) * len(templates) > BATCH_SIZE
    for encoder in (tiny_clip, offline):
        got = label_embeddings(encoder, labels, templates)
        assert got.shape == (4, encoder.dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, by_hand(encoder, labels, templates), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_a_file_of_your_own(tmp_path, offline):
    path = tmp_path / "mine.txt"
    path.write_text("# my templates\n\na photo of a {}.\n  a {} with {braces}  \n")
    templates = load_templates(str(path))
    assert templates == ["a photo of a {}.", "a {} with {braces}"]
    np.testing.assert_allclose(label_embeddings(offline, ["cat"], templates),
                               by_hand(offline, ["cat"], templates), atol=1e-5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read templates file"),
        ("# only a comment\n\n", "holds no templates"),
        ("a photo of a {}.\na photo of a cat.\n", "line 2 has no {}"),
    ],
)
def test_bad_templates_are_one_input_error(tmp_path, content, message):
    path = tmp_path / "templates.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message.replace("{}", r"\{\}")):
        load_templates(str(path))


@pytest.mark.slow  # runs pixseek as a process
def test_cli_classify_with_imagenet_templates(tmp_path, samples):
    cat = next(p.path for p in samples if p.name == "chelsea_cat")
    labels = ["dog", "cat", "car"]
    proc = pixseek(tmp_path, "classify", str(cat), *labels, "--templates", "imagenet", "--json")
    assert proc.returncode == 0, proc.stderr
    ranked = json.loads(proc.stdout)
    assert sorted(r["label"] for r in ranked) == sorted(labels) and ranked[0]["label"] == "cat"
    assert sum(r["probability"] for r in ranked) == pytest.approx(1.0, abs=1e-6)
    # Plain output: one "label  probability" line per label.
    mine = tmp_path / "mine.txt"
    mine.write_text("a photo of a {}.\na close-up photo of the {}.\n")
    proc = pixseek(tmp_path, "classify", str(cat), *labels, "--templates", str(mine))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 3 and lines[0].split()[0] == "cat"


@pytest.mark.slow  # runs pixseek as a process
@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read templates file"), ("", "holds no templates"),
     ("a photo\n", "line 1 has no {}")],
)
def test_cli_bad_templates_exit_2_with_one_line(tmp_path, samples, content, message,
                                                cli_error):
    # The templates fail before any model loads.
    path = tmp_path / "templates.txt"
    if content is not None:
        path.write_text(content)
    line = cli_error(["--data-dir", str(tmp_path / "data"), "--model", "offline", "classify",
                      str(samples[0].path), "a cat", "--templates", str(path)])
    assert message in line
