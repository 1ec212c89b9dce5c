"""Calibrated zero-shot probabilities (search.calibration) with the offline model on the
sample photos: the fitted scale, its cache, and classify's --temperature."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from search import calibration


@pytest.fixture(scope="module")
def cache(tmp_path_factory, offline):
    """A user cache holding the offline model's calibration (measured once here)."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(folder))
        found = calibration.calibration(offline)
        yield folder / "pixseek", found


@pytest.fixture(scope="module")
def trials(offline, samples):
    similarity, owner = calibration.similarities(offline, samples)
    return calibration.choices(similarity, owner, np.random.default_rng(1), 1)


def test_calibrated_scale_trusts_no_wrong_answer(cache, trials, offline):
    _, found = cache
    before = calibration.measure(trials, offline.logit_scale)
    after = calibration.measure(trials, found.logit_scale)
    # CLIP's scale of 100 is overconfident with this model: wrong answers near 100 %.
    assert before["max_wrong"] >= 0.99 and before["mean_top"] - before["accuracy"] > 0.1
    assert after["max_wrong"] < 0.99
    assert abs(after["mean_top"] - after["accuracy"]) <= 0.08
    assert after["ece"] < before["ece"] and found.nll_after < found.nll_before
    assert found.model == offline.model_id and found.photos >= 10


def test_probabilities_are_a_softmax_per_image(offline, cache):
    texts = offline.encode_texts(["a cat", "a dog", "a rocket"])
    images = texts[:2]  # any unit vectors will do
    probs = calibration.probabilities(images, texts, 10.0)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0)
    expected = np.exp(10 * (images @ texts.T))
    assert np.allclose(probs, expected / expected.sum(axis=1, keepdims=True))
    folder, found = cache
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(folder.parent))
        by_encoder = calibration.probabilities(images, texts, offline)
    assert np.allclose(by_encoder, calibration.probabilities(images, texts, found.logit_scale))


def test_the_cache_is_read_and_its_version_checked(cache, offline):
    folder, found = cache
    [path] = folder.glob("calibration-*.json")
    stamp = path.stat().st_mtime_ns
    assert calibration.calibration(offline, folder) == found and path.stat().st_mtime_ns == stamp
    data = json.loads(path.read_text())
    # A hit is what the file says, not a recomputation.
    path.write_text(json.dumps({**data, "logit_scale": 42.0}))
    assert calibration.calibration(offline, folder).logit_scale == 42.0
    # Another checkpoint under the same name (its captions encode differently): a miss.
    check = np.asarray(data["check"], dtype=np.float32)
    assert calibration._read(path, offline.model_id, check) is not None
    assert calibration._read(path, offline.model_id, -check) is None
    assert calibration._read(path, "another model", check) is None
    # Another version of the method: measured again, and the file rewritten.
    path.write_text(json.dumps({**data, "logit_scale": 42.0, "version": calibration.VERSION + 1}))
    assert calibration.calibration(offline, folder) == found
    assert json.loads(path.read_text())["version"] == calibration.VERSION


def test_classify_uses_the_calibration_and_temperature_overrides(cache, tmp_path, monkeypatch,
                                                                 samples, offline):
    from pixseek.cli import cli
    from search.preprocess import decode

    folder, found = cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder.parent))
    cat = next(p for p in samples if p.name == "chelsea_cat")
    labels = ["a cat", "a dog", "a rocket", "a cup of coffee"]
    image = offline.encode_pixels(decode(cat.path.read_bytes(), offline.spec,
                                         draft=False).pixels[None])
    texts = offline.encode_texts(labels)
    args = ["--data-dir", str(tmp_path / "data"), "--model", "offline", "classify",
            str(cat.path), *labels, "--json"]
    runner = CliRunner()

    def probs(*extra: str) -> np.ndarray:
        result = runner.invoke(cli, [*args, *extra])
        assert result.exit_code == 0, result.output
        got = {row["label"]: row["probability"] for row in json.loads(result.stdout)}
        return np.array([got[label] for label in labels])

    calibrated = probs()
    assert np.allclose(calibrated, calibration.probabilities(image, texts, found.logit_scale)[0],
                       atol=1e-5)
    assert calibrated.argmax() == 0  # a cat
    clip_scale = probs("--temperature", "0.01")
    assert np.allclose(clip_scale, calibration.probabilities(image, texts, 100.0)[0], atol=1e-5)
    assert clip_scale.max() > calibrated.max()
    bad = runner.invoke(cli, [*args, "--temperature", "0"])
    assert bad.exit_code == 2 and "temperature" in bad.output
