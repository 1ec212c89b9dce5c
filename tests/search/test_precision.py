"""model.precision: explicit precisions, auto's fidelity check, its cache, its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from search.config import load_config
from search.encoders import load_encoder
from search.encoders import precision as prec
from search.encoders.clip import ClipEncoder
from search.errors import ConfigError
from search.preprocess import decode


@pytest.fixture(scope="module")
def batch(tiny_clip, samples):
    photos = samples[:8]
    pixels = np.stack([decode(p.path, tiny_clip.spec).pixels for p in photos])
    return pixels, [p.captions[0] for p in photos]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_explicit_precision_on_cpu_is_close_to_fp32(tiny_clip_dir, tiny_clip, batch, precision):
    pixels, captions = batch
    enc = load_encoder(str(tiny_clip_dir), device="cpu", precision=precision)
    assert (enc.precision, enc.precision_reason) == (precision, "asked for")
    for got, ref in [
        (enc.encode_pixels(pixels), tiny_clip.encode_pixels(pixels)),
        (enc.encode_texts(captions), tiny_clip.encode_texts(captions)),
    ]:
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        assert np.sum(got * ref, axis=1).min() > 0.98


def test_precision_the_device_cannot_run_is_one_config_error(tiny_clip_dir):
    with pytest.raises(ConfigError, match=r"model\.precision: fp16 is not available on cpu"):
        load_encoder(str(tiny_clip_dir), device="cpu", precision="fp16")
    with pytest.raises(ConfigError, match=r"model\.precision: int8 is not available on cuda"):
        prec.check_supported("int8", "cuda")
    with pytest.raises(ConfigError, match=r"model\.precision: bf16 is not available on mps"):
        prec.check_supported("bf16", "mps")


@pytest.mark.slow  # measures every precision on a sample
def test_auto_picks_a_faithful_precision_and_caches_it(tiny_clip_dir, tmp_path, monkeypatch):
    enc = load_encoder(str(tiny_clip_dir), device="cpu", precision="auto", cache_dir=tmp_path)
    entries = json.loads((tmp_path / "precision.json").read_text())
    (key,) = entries
    assert enc.model_id in key and "cpu" in key and prec.cpu_name() in key
    entry = entries[key]
    assert entry["precision"] == enc.precision
    trials = {t["precision"]: t for t in entry["trials"]}
    assert set(trials) == {"fp32", "bf16", "int8"}  # every precision the CPU supports
    assert trials[enc.precision]["faithful"]
    fastest = max(t["images_per_s"] for t in trials.values() if t["faithful"])
    assert trials[enc.precision]["images_per_s"] == fastest
    for t in trials.values():  # nothing unfaithful is timed, let alone picked
        if not t["faithful"]:
            assert t["images_per_s"] is None
            assert t["precision"] != enc.precision
    assert enc.precision_reason.startswith("auto: ")

    # The second load reads the cache: no measuring.
    def no_measure(*a, **k):
        raise AssertionError("auto measured again")

    monkeypatch.setattr(prec, "measure", no_measure)
    again = load_encoder(str(tiny_clip_dir), device="cpu", precision="auto", cache_dir=tmp_path)
    assert again.precision == enc.precision
    assert again.precision_reason.startswith("auto, cached: ")


@pytest.mark.slow  # measures every precision, for two models
def test_auto_cache_is_keyed_by_model(tiny_clip_dir, tmp_path):
    # Another model's cached choice is not this model's: it measures, and both stay.
    prec.write_choice(tmp_path, "some/other-model", "cpu", {"precision": "int8", "reason": "x"})
    enc = load_encoder(str(tiny_clip_dir), device="cpu", precision="auto", cache_dir=tmp_path)
    assert not enc.precision_reason.startswith("auto, cached")
    keys = json.loads((tmp_path / "precision.json").read_text())
    assert len(keys) == 2
    assert prec.cached_choice(tmp_path, "some/other-model", "cpu")["precision"] == "int8"
    assert prec.cached_choice(tmp_path, enc.model_id, "cpu")["precision"] == enc.precision


def test_cache_key_is_the_same_without_torch_imported():
    # ``pixseek status`` reads the cached choice without importing torch: its key must be
    # the one the loaded model wrote, or status would say "not measured yet".
    import subprocess
    import sys
    from pathlib import Path

    import torch

    code = ("import sys; from search.encoders.precision import cache_key; "
            "print(cache_key('m', 'cpu')); assert 'torch' not in sys.modules")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True).stdout.strip()
    assert out == prec.cache_key("m", "cpu") and out.endswith(f"torch {torch.__version__}")


def test_auto_refuses_precisions_that_fail_the_fidelity_check(
    tiny_clip_dir, tmp_path, monkeypatch
):
    # A threshold no reduced precision can meet: bf16 keeps 8 bits of mantissa, int8 less.
    # The check runs for real on the model's vectors; auto must fall back to fp32, saying why.
    monkeypatch.setattr(prec, "fast_bf16_cpu", lambda: True)  # measure bf16 here too
    enc = ClipEncoder(
        str(tiny_clip_dir), device="cpu", precision="auto", cache_dir=tmp_path,
        min_cosine=0.9999999,
    )
    assert enc.precision == "fp32"
    assert "refused: bf16 unfaithful" in enc.precision_reason
    assert "int8 unfaithful" in enc.precision_reason
    (entry,) = json.loads((tmp_path / "precision.json").read_text()).values()
    trials = {t["precision"]: t for t in entry["trials"]}
    assert not trials["bf16"]["faithful"] and not trials["int8"]["faithful"]
    assert trials["int8"]["min_image_cosine"] < 0.9999999


def test_auto_without_sample_photos_falls_back_to_fp32(tiny_clip_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "sample_batch", lambda spec, count=32: None)
    enc = load_encoder(str(tiny_clip_dir), device="cpu", precision="auto", cache_dir=tmp_path)
    assert enc.precision == "fp32"
    assert "no sample photos" in enc.precision_reason


def test_precision_from_env_and_config(tmp_path):
    empty = tmp_path / "c.yaml"
    empty.write_text("model:\n  precision: bf16\n")
    assert load_config(empty, environ={}).model.precision == "bf16"
    env = {"PIXSEEK_MODEL_PRECISION": "int8"}
    assert load_config(empty, environ=env).model.precision == "int8"
    with pytest.raises(ConfigError, match=r"model\.precision"):
        load_config(empty, environ={"PIXSEEK_MODEL_PRECISION": "fp8"})


def test_offline_model_runs_in_fp32(offline):
    assert offline.precision == "fp32"


def test_status_shows_the_precision(tiny_clip_dir, tmp_path):
    from pixseek.cli import cli

    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    data = tmp_path / "data"
    # torch's own precision auto (runtime auto measures the (runtime, precision) pair:
    # tests/search/test_runtimes.py).
    base = ["--config", str(empty), "--data-dir", str(data), "--model", str(tiny_clip_dir),
            "--device", "cpu", "--runtime", "torch"]
    runner = CliRunner()

    def status(*flags: str) -> dict:
        res = runner.invoke(cli, [*base, *flags, "status", "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["precision"]

    assert status("--precision", "int8") == {
        "setting": "int8", "in_use": "int8", "reason": "asked for"}
    before = status()
    assert before["setting"] == "auto" and before["in_use"] is None
    assert "not measured yet" in before["reason"]
    enc = load_encoder(str(tiny_clip_dir), device="cpu", precision="auto", cache_dir=data)
    after = status()
    assert after["in_use"] == enc.precision
    text = runner.invoke(cli, [*base, "status"]).stdout
    assert f"precision:  {enc.precision}" in text


def test_bf16_is_measured_on_a_cpu_only_with_bf16_in_hardware():
    assert not prec.bf16_in_hardware({"avx2", "avx512f", "fma"})
    assert prec.bf16_in_hardware({"avx2", "avx512_bf16"})
    assert prec.bf16_in_hardware({"amx_bf16", "amx_tile"})
    assert prec.bf16_in_hardware(None)  # flags unknown: only a measurement can tell


def test_auto_skips_bf16_on_a_cpu_without_it_and_says_so(tiny_clip_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "fast_bf16_cpu", lambda: False)
    enc = load_encoder(str(tiny_clip_dir), device="cpu", precision="auto", cache_dir=tmp_path)
    assert enc.precision in ("fp32", "int8")
    assert "bf16 not measured (this CPU has neither amx_bf16 nor avx512_bf16" in (
        enc.precision_reason)
    (entry,) = json.loads((tmp_path / "precision.json").read_text()).values()
    trials = {t["precision"]: t for t in entry["trials"]}
    assert trials["bf16"]["skipped"] and not trials["bf16"]["faithful"]
    assert trials["bf16"]["images_per_s"] is None and trials["int8"]["min_image_cosine"] > 0


def test_a_clearly_slower_candidate_is_not_timed_further(tiny_clip, batch):
    # int8 made slow for real (a delay around the quantised model's image calls): its first
    # call shows it cannot win, so it is not timed again, and fp32 is chosen.
    import time

    pixels, captions = batch
    int8 = prec.apply(tiny_clip.model, "int8", inplace=False)
    calls = {"fp32": 0, "int8": 0}
    fp32_per_image = []  # seconds, measured here: the delay follows the machine's load

    def encode(p, px, texts):
        if px is None:
            return tiny_clip._text_features(tiny_clip.model if p == "fp32" else int8, texts)
        calls[p] += 1
        if p == "int8":
            time.sleep(4 * max(fp32_per_image) * len(px))
            return tiny_clip._image_features(int8, prec.input_dtype(p), px)
        t0 = time.perf_counter()
        out = tiny_clip.encode_pixels(px)
        fp32_per_image.append((time.perf_counter() - t0) / len(px))
        return out

    choice = prec.measure(encode, pixels, captions, ["fp32", "int8"], device="cpu",
                          timed_images=4)
    trials = {t.precision: t for t in choice.trials}
    assert choice.precision == "fp32"
    assert trials["int8"].faithful and trials["int8"].timed_runs == 0
    assert calls == {"fp32": 1 + prec.TIMED_RUNS, "int8": 1}
    assert trials["int8"].images_per_s < trials["fp32"].images_per_s
