"""The GPU paths, as far as a CPU can check them: out-of-memory handling on a real model
with an injected fault, device and precision rules, the defaults for a large GPU, and the
FAISS GPU copy's life (k routing, one set of resources, incremental updates) with a real
in-memory FAISS copy standing in for the GPU one. ``benchmarks/gpu_proof.py`` checks the
rest on a real GPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from search.config import Config, load_config
from search.encoders import load_encoder, pick_device
from search.encoders import precision as prec
from search.encoders.oom import Splitter, is_oom, load_with_fallback
from search.errors import ConfigError, ResourceError
from search.faiss_lib import faiss
from search.store import Store
from search.vectors import FaissIndex
from search.vectors import gpu as faiss_gpu
from tests.search.test_vectors import MODEL, add_vectors, clustered


def _oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):
    """Its own encoder: the OOM policy remembers a cap on the encoder it ran on."""
    return load_encoder(str(tiny_clip_dir), device="cpu", precision="fp32")


def _pixels(encoder, n: int, seed: int = 0) -> np.ndarray:
    h, w = encoder.spec.crop or (224, 224)
    return np.random.default_rng(seed).normal(size=(n, 3, h, w)).astype(np.float32)


def _limit(monkeypatch, model, method: str, most: int) -> list[int]:
    """Make ``model.method`` run out of memory on more than ``most`` items; returns the
    batch sizes it was called with."""
    real = getattr(model, method)
    sizes: list[int] = []

    def limited(*args, **kwargs):
        batch = next(iter(kwargs.values()))
        sizes.append(len(batch))
        if len(batch) > most:
            raise _oom()
        return real(*args, **kwargs)

    monkeypatch.setattr(model, method, limited)
    return sizes


# -- out of memory while encoding ----------------------------------------------------------


def test_an_oom_batch_is_split_and_gives_the_same_vectors(clip, monkeypatch, caplog):
    pixels = _pixels(clip, 10)
    want = clip.encode_pixels(pixels)
    clip.__dict__.pop("_oom_splitter", None)
    sizes = _limit(monkeypatch, clip.model, "get_image_features", 3)
    with caplog.at_level(logging.WARNING, logger="search.encoders.oom"):
        got = clip.encode_pixels(pixels)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert sizes[0] == 10 and max(s for s in sizes if s <= 3) == 3
    assert "model.batch_size" in caplog.text
    # The size that fitted is remembered: the next batch is split up front, no OOM first.
    sizes.clear()
    np.testing.assert_allclose(clip.encode_pixels(pixels), want, atol=1e-5)
    assert max(sizes) <= 3 and sum(sizes) == 10


def test_texts_are_split_too(clip, monkeypatch):
    texts = [f"a photo of thing {i}" for i in range(7)]
    want = clip.encode_texts(texts)
    clip.__dict__.pop("_oom_splitter", None)
    sizes = _limit(monkeypatch, clip.model, "get_text_features", 2)
    np.testing.assert_allclose(clip.encode_texts(texts), want, atol=1e-5)
    assert sizes[0] == 7 and 2 in sizes


def test_one_item_that_does_not_fit_is_one_error_naming_the_batch_size(clip, monkeypatch):
    clip.__dict__.pop("_oom_splitter", None)
    _limit(monkeypatch, clip.model, "get_image_features", 0)
    with pytest.raises(ResourceError, match=r"model\.batch_size") as err:
        clip.encode_pixels(_pixels(clip, 4))
    assert "cpu" in str(err.value) and "\n" not in str(err.value)


def test_other_errors_are_not_taken_for_oom(clip, monkeypatch):
    clip.__dict__.pop("_oom_splitter", None)

    def broken(**_):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(clip.model, "get_image_features", broken)
    with pytest.raises(RuntimeError, match="shapes"):
        clip.encode_pixels(_pixels(clip, 4))
    assert is_oom(RuntimeError("CUDA error: out of memory")) and is_oom(_oom())
    assert not is_oom(ValueError("out of memory"))


def test_splitter_cap_only_shrinks():
    s = Splitter("cuda")
    calls: list[int] = []

    def encode(items):
        calls.append(len(items))
        if len(items) > 5:
            raise _oom()
        return np.ones((len(items), 2), np.float32)

    assert s.run(encode, np.zeros((20, 1)), "image").shape == (20, 2)
    assert s.cap == 5
    calls.clear()
    s.run(encode, np.zeros((3, 1)), "image")
    assert calls == [3] and s.cap == 5


def test_an_oom_at_batch_one_through_the_cli_is_one_line_exit_2(
    tiny_clip_dir, tmp_path, samples, cli_error, monkeypatch
):
    from transformers import CLIPModel

    def no_memory(self, *args, **kwargs):
        raise _oom()

    monkeypatch.setattr(CLIPModel, "get_image_features", no_memory)
    line = cli_error([
        "--data-dir", str(tmp_path / "data"), "--model", str(tiny_clip_dir), "--device", "cpu",
        "--precision", "fp32", "classify", str(samples[0].path), "a cat", "a dog",
    ])
    assert "model.batch_size" in line and "out of memory on cpu" in line


# -- out of memory while loading -----------------------------------------------------------


def _oom_on_move(monkeypatch, times: int) -> list[str]:
    """The first ``times`` moves of a model to a device run out of memory, as a model too
    large for the GPU does at ``.to("cuda")``; returns the devices asked for."""
    real = torch.nn.Module.to
    asked: list[str] = []

    def to(self, *args, **kwargs):
        if args and isinstance(args[0], str | torch.device):
            asked.append(str(args[0]))
            if len(asked) <= times:
                raise _oom()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    return asked


def test_a_model_too_large_for_the_gpu_loads_on_the_cpu_under_auto(
    tiny_clip_dir, monkeypatch, capsys
):
    asked = _oom_on_move(monkeypatch, times=1)
    encoder = load_encoder(str(tiny_clip_dir), device="auto", precision="fp32")
    assert encoder.device == "cpu" and len(asked) == 2
    assert "loading it on the CPU instead" in capsys.readouterr().err
    assert encoder.encode_texts(["a cat"]).shape == (1, encoder.dim)


def test_a_model_too_large_for_an_explicit_device_is_one_error(tiny_clip_dir, monkeypatch):
    _oom_on_move(monkeypatch, times=1)
    with pytest.raises(ResourceError, match=r"model\.device: cpu: the model does not fit"):
        load_encoder(str(tiny_clip_dir), device="cpu", precision="fp32")


def test_load_fallback_leaves_other_errors_alone():
    def load(device):
        raise RuntimeError(f"no such file on {device}")

    with pytest.raises(RuntimeError, match="no such file on auto"):
        load_with_fallback(load, "auto")


# -- devices and precision -----------------------------------------------------------------


@pytest.mark.skipif(
    torch.backends.mps.is_available(), reason="this machine has MPS: nothing to refuse"
)
def test_mps_without_mps_is_a_config_error_before_any_load():
    with pytest.raises(ConfigError, match=r"model\.device: mps was asked for"):
        pick_device("mps")


def test_fp16_applies_on_mps_and_cuda_when_allowed():
    assert prec.default_precision("mps", True) == "fp16"
    assert prec.default_precision("cuda", True) == "fp16"
    assert prec.default_precision("mps", False) == "fp32"
    assert prec.default_precision("cpu", True) == "fp32"
    prec.check_supported(prec.default_precision("mps", True), "mps")  # runnable there


# -- defaults for a large GPU --------------------------------------------------------------


def _config(tmp_path, **values) -> Config:
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    return load_config(empty, overrides=values, environ={})


def test_batch_size_auto_feeds_a_gpu_and_an_explicit_one_is_kept(tmp_path):
    auto = _config(tmp_path)
    assert auto.model.batch_size == "auto"
    assert (auto.model.batch_for("cpu"), auto.model.batch_for("mps")) == (32, 32)
    assert auto.model.batch_for("cuda") == 256
    explicit = _config(tmp_path, **{"model.batch_size": 48})
    assert explicit.model.batch_for("cuda") == explicit.model.batch_for("cpu") == 48


@pytest.mark.parametrize("bad", [0, 5000, "lots"])
def test_a_bad_batch_size_names_the_key(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"model\.batch_size"):
        _config(tmp_path, **{"model.batch_size": bad})


def test_decode_workers_auto_takes_the_cores_when_a_gpu_encodes(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    auto = _config(tmp_path)
    assert auto.indexer.worker_count() == auto.indexer.worker_count("cpu") == 8
    assert auto.indexer.worker_count("cuda") == 31
    fixed = _config(tmp_path, **{"indexer.decode_workers": 3})
    assert fixed.indexer.worker_count("cuda") == 3


# -- FAISS on the GPU ----------------------------------------------------------------------


def test_k_past_faiss_gpu_limit_searches_on_the_cpu():
    assert faiss_gpu.gpu_can_search(2048, None)
    assert not faiss_gpu.gpu_can_search(2049, None)
    assert not faiss_gpu.gpu_can_search(10, faiss.SearchParameters(sel=faiss.IDSelectorAll()))


def test_a_gpu_copy_pays_only_for_a_large_index_searched_often():
    many = faiss_gpu.GPU_MIN_VECTORS
    assert not faiss_gpu.gpu_pays("flat", many, 1)  # a one-shot `pixseek search`
    assert faiss_gpu.gpu_pays("flat", many, faiss_gpu.GPU_AFTER_SEARCHES)
    assert not faiss_gpu.gpu_pays("flat", many - 1, 100)
    assert not faiss_gpu.gpu_pays("ivf", many, 100)


class _Recorded:
    """A FAISS index that counts its searches and additions (the copy's stand-in)."""

    def __init__(self, index):
        self.index, self.searches, self.added = index, [], 0

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, q, k):
        self.searches.append(k)
        return self.index.search(q, k)

    def add_with_ids(self, x, ids):
        self.added += len(ids)
        self.index.add_with_ids(x, ids)


class CpuStandIn(faiss_gpu.GpuBackend):
    """The GPU backend with its one device replaced by RAM: clones are real FAISS copies
    (serialised), resources a counted token. Everything else is the real logic."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail, self.resources_made, self.copies = fail, 0, []

    def count(self) -> int:
        return 1

    def resources(self) -> object:
        with self._lock:
            if self._resources is None:
                self._resources = object()
                self.resources_made += 1
            return self._resources

    def clone(self, index):
        self.resources()
        if self.fail:
            raise RuntimeError("cudaMalloc error out of memory [2]")
        # A copy through bytes: clone_index of a memory-mapped index cannot grow.
        self.copies.append(_Recorded(faiss.deserialize_index(faiss.serialize_index(index))))
        return self.copies[-1]


@pytest.fixture
def gpu(monkeypatch):
    backend = CpuStandIn()
    monkeypatch.setattr(faiss_gpu, "GPU", backend)
    monkeypatch.setattr(faiss_gpu, "GPU_MIN_VECTORS", 1000)
    return backend


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield s
    s.close()


def _search_often(index: FaissIndex, q: np.ndarray, k: int = 10):
    for _ in range(faiss_gpu.GPU_AFTER_SEARCHES):
        out = index.search(q, k)
    return out


def test_the_gpu_copy_is_made_once_used_and_answers_like_the_cpu(store, tmp_path, gpu):
    add_vectors(store, clustered(2500))
    index = FaissIndex(store, MODEL, tmp_path / "data", kind="flat").open()
    q = clustered(5, seed=9)
    cpu = index.search(q, 10)
    assert index.gpu_clones == 0  # one search: no copy
    got = _search_often(index, q)
    assert index.gpu_clones == 1 and gpu.copies[0].searches
    np.testing.assert_array_equal(got[1], cpu[1])
    # k past FAISS's GPU limit: the CPU index answers, the copy is not asked.
    before = len(gpu.copies[0].searches)
    assert index.search(q, 2049)[1].shape == (5, 2049)
    assert len(gpu.copies[0].searches) == before


def test_new_vectors_are_added_to_the_gpu_copy_not_copied_anew(store, tmp_path, gpu):
    add_vectors(store, clustered(2000))
    index = FaissIndex(store, MODEL, tmp_path / "data", kind="flat").open()
    q = clustered(5, seed=9)
    _search_often(index, q)
    extra = clustered(1500, seed=3)
    extra_ids = add_vectors(store, extra)
    index.catch_up()
    assert index.persist(force=True)  # a new snapshot holding the 1500
    got = index.search(extra[:5], 1)
    assert index.gpu_clones == 1 and gpu.copies[0].added == 1500
    assert gpu.copies[0].ntotal == index.snap.index.ntotal == 3500
    assert got[1][:, 0].tolist() == extra_ids[:5]
    assert gpu.resources_made == 1


def test_a_reader_follows_a_writers_snapshot_on_its_gpu_copy(store, tmp_path, gpu):
    add_vectors(store, clustered(2000))
    writer = FaissIndex(store, MODEL, tmp_path / "data", kind="flat").open()
    reader = FaissIndex(store, MODEL, tmp_path / "data", kind="flat", verify=False).open()
    q = clustered(5, seed=9)
    _search_often(reader, q)
    add_vectors(store, clustered(1200, seed=4))
    writer.catch_up()
    assert writer.persist(force=True)
    assert reader.refresh()
    want = writer.search(q, 10)
    np.testing.assert_array_equal(reader.search(q, 10)[1], want[1])
    assert reader.gpu_clones == 1 and gpu.copies[0].ntotal == 3200
    assert gpu.resources_made == 1  # one set of resources for every index in the process


def test_removals_copy_the_index_anew(store, tmp_path, gpu):
    ids = add_vectors(store, clustered(2000))
    index = FaissIndex(store, MODEL, tmp_path / "data", kind="flat").open()
    q = clustered(5, seed=9)
    _search_often(index, q)
    assert store.collect_orphans(candidates=ids[:100]).contents == 100
    index.catch_up()
    assert index.persist(force=True)
    found = index.search(q, 50)[1]
    assert index.gpu_clones == 2 and gpu.copies[-1].ntotal == 1900
    assert not set(found.ravel().tolist()) & set(ids[:100])
    assert gpu.resources_made == 1


def test_a_failed_move_releases_the_gpu_resources(store, tmp_path, monkeypatch, caplog):
    failing = CpuStandIn(fail=True)
    monkeypatch.setattr(faiss_gpu, "GPU", failing)
    monkeypatch.setattr(faiss_gpu, "GPU_MIN_VECTORS", 1000)
    add_vectors(store, clustered(2000))
    index = FaissIndex(store, MODEL, tmp_path / "data", kind="flat").open()
    q = clustered(5, seed=9)
    cpu = index.search(q, 10)
    with caplog.at_level(logging.WARNING, logger="search.vectors.faiss_index"):
        got = _search_often(index, q)
    np.testing.assert_array_equal(got[1], cpu[1])
    assert failing.resources_made == 1 and failing._resources is None
    assert not index.use_gpu
    assert caplog.text.count("cannot move to the GPU") == 1
