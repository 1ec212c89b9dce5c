"""Web UI fixtures: the 12 sample photos indexed with the offline model, an app, a client."""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def indexed_once(tmp_path_factory, samples, offline) -> tuple[Path, Path]:
    """The sample library indexed with the offline encoder once per session: (its data
    dir, its photos). Tests never use it directly: ``indexed`` hands each a copy."""
    import search.ocr
    from indexer.pipeline import Indexer
    from search.config import load_config
    from search.store import Store
    from tests.library import copy_library

    root = tmp_path_factory.mktemp("indexed")
    photos = copy_library(root / "photos", samples)
    (root / "empty.yaml").write_text("{}\n")
    config = load_config(root / "empty.yaml", environ={}, overrides={
        "data_dir": str(root / "data"), "indexer.decode_workers": 0, "model.name": "offline"})
    store = Store(config.db_url)
    try:
        with pytest.MonkeyPatch.context() as mp:  # as no_ocr_unless_marked does per test
            mp.setattr(search.ocr, "available", lambda: False)
            summary = Indexer(config, store, offline, progress=False).index([photos])
    finally:
        store.close()
    assert summary.encoded == 12 and summary.failed == 0
    return root / "data", photos


@pytest.fixture
def indexed(make_config, library: Path, indexed_once, offline):
    """A Config whose store holds ``library``, indexed with the offline encoder: a copy of
    ``indexed_once`` (its store and vector index, the file paths moved to ``library``),
    so a test may write to it. Seconds cheaper than indexing again for every test."""
    config = make_config(model__name="offline")
    data, photos = indexed_once
    if config.db_url != f"sqlite:///{config.data_path / 'pixseek.db'}":  # e.g. PostgreSQL
        return _index(config, library, offline)
    shutil.copytree(data, config.data_path)
    with closing(sqlite3.connect(config.data_path / "pixseek.db")) as db, db:
        moved = db.execute(
            "UPDATE files SET path = ? || substr(path, ?) WHERE substr(path, 1, ?) = ?",
            (str(library), len(str(photos)) + 1, len(str(photos)) + 1, f"{photos}{os.sep}"),
        ).rowcount
    assert moved == 12
    return config


def _index(config, library: Path, offline):
    from indexer.pipeline import Indexer
    from search.store import Store

    store = Store(config.db_url)
    try:
        summary = Indexer(config, store, offline, progress=False).index([library])
    finally:
        store.close()
    assert summary.encoded == 12 and summary.failed == 0
    return config


@pytest.fixture
def make_app(offline):
    """``make_app(config, token=None)``: an app over the session's offline encoder."""
    from search.engine import Engine
    from webui import create_app

    engines = []

    def make(config, token: str | None = None):
        engines.append(Engine(config, encoder=offline))
        app = create_app(config, engines[-1], token=token)
        app.testing = True
        return app

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def app(indexed, make_app):
    return make_app(indexed)


@pytest.fixture
def client(app):
    return app.test_client()
