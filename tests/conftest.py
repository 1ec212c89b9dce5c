"""Shared fixtures: real models (tiny random CLIP, offline backend), real photos, stores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# No test may reach for a model hub: fail fast instead of retrying for half a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OCR reads a photo in about a second: only the tests marked `ocr` pay for it. (Here for
# the commands tests run as processes; `no_ocr_unless_marked` below for in-process ones.)
os.environ["PIXSEEK_OCR_ENABLED"] = "false"


# Fixtures that start a server: a test that uses one, runs on PostgreSQL through
# ``database``, or reads text (`ocr`: about a second a photo) is `slow` (make check leaves
# it out).
SLOW_FIXTURES = {"pg_cluster", "pg_url"}
HUB_SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # hf_cache's commit


def pytest_collection_modifyitems(items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or params.get("database") == "postgresql"
                or item.get_closest_marker("ocr") is not None):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def no_ocr_unless_marked(request, monkeypatch):
    if request.node.get_closest_marker("ocr") is None:
        import search.ocr

        monkeypatch.setattr(search.ocr, "available", lambda: False)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.scratch import build_random_clip

    return build_random_clip(tmp_path_factory.mktemp("tiny-clip"), size="tiny")


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir: Path):
    from search.encoders import load_encoder

    return load_encoder(str(tiny_clip_dir), device="cpu")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, tiny_clip_dir):
    """A Hugging Face cache holding the tiny random CLIP under the ``fast`` preset's hub id,
    laid out as huggingface_hub lays out a download (refs/main -> snapshots/<commit>);
    ``HF_HUB_CACHE`` names it for processes the test starts."""
    import shutil

    import huggingface_hub.constants as hub_constants

    from search.encoders.presets import PRESETS

    cache = tmp_path / "hf-cache"
    repo = cache / ("models--" + PRESETS["fast"].hub_id.replace("/", "--"))
    shutil.copytree(tiny_clip_dir, repo / "snapshots" / HUB_SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_SNAPSHOT)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def offline():
    from search.encoders import load_encoder

    return load_encoder("offline", device="cpu")


@pytest.fixture(scope="session")
def samples():
    from search.samples import sample_photos

    photos = sample_photos()
    assert len(photos) >= 10, "the test photos come from scikit-image, scikit-learn, matplotlib"
    return photos


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory, samples) -> Path:
    from search.samples import copy_sample_photos

    folder = tmp_path_factory.mktemp("samples")
    copy_sample_photos(folder, photos=samples)
    return folder


@pytest.fixture
def library(tmp_path: Path, samples) -> Path:
    """A fresh, writable copy of the 12 sample photos (``copy_library``)."""
    from tests.library import copy_library

    return copy_library(tmp_path / "photos", samples)


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL server (tests/postgres.py); skips where there is none."""
    from tests.postgres import Cluster

    pytest.importorskip("psycopg", reason="pip install -e '.[postgres]'")
    cluster = Cluster()
    if not cluster.available:
        pytest.skip("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh, empty PostgreSQL database."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> str | None:
    """Runs a test on both databases: None (the default SQLite file in the data dir) or a
    fresh PostgreSQL database. ``make_config`` picks it up."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


@pytest.fixture
def make_config(tmp_path: Path, request):
    """A Config with its own data dir; keyword overrides use dotted keys via __. In a test
    that uses the ``database`` fixture, the config points at that database."""
    from search.config import load_config

    empty = tmp_path / "empty-config.yaml"
    empty.write_text("{}\n")
    url = request.getfixturevalue("database") if "database" in request.fixturenames else None

    def make(**overrides):
        values = {"data_dir": str(tmp_path / "data"), "indexer.decode_workers": 0}
        if url:
            values["database_url"] = url
        values.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_config(empty, overrides=values, environ={})

    return make


def _one_error_line(monkeypatch, capsys, tmp_path, code: int):
    """``run(argv) -> line``: run ``pixseek ARGV`` through the console script's own
    ``main``, in process (no ./config.yaml, no PIXSEEK_CONFIG), and check the one error
    path: exit ``code`` and one ``Error:`` line on stderr, no traceback. Returns that line."""
    from pixseek.cli import main

    def run(argv: list[str]) -> str:
        monkeypatch.setattr(sys, "argv", ["pixseek", *argv])
        monkeypatch.delenv("PIXSEEK_CONFIG", raising=False)
        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert exited.value.code == code, err
        assert len(lines) == 1 and lines[0].startswith("Error: "), err
        assert "Traceback" not in err
        return lines[0]

    return run


@pytest.fixture
def cli_error(monkeypatch, capsys, tmp_path):
    """``cli_error(argv) -> line``: a bad value (exit 2), one ``Error:`` line."""
    return _one_error_line(monkeypatch, capsys, tmp_path, 2)


@pytest.fixture
def cli_failure(monkeypatch, capsys, tmp_path):
    """``cli_failure(argv) -> line``: like ``cli_error``, for a failure that is not a bad
    value: exit 1 and one ``Error:`` line, no traceback."""
    return _one_error_line(monkeypatch, capsys, tmp_path, 1)
