"""Web UI fixtures: the 12 sample photos indexed with the offline model, an app, a client."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def indexed(make_config, library: Path, offline):
    """A Config whose store holds the sample library, indexed with the offline encoder."""
    from indexer.pipeline import Indexer
    from search.store import Store

    config = make_config(model__name="offline")
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
