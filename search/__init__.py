"""pixseek's engine core, usable as a library.

>>> from search import Engine, load_config, load_encoder
>>> enc = load_encoder("offline")                  # or "ViT-B/32", a hub id, a folder
>>> vecs = enc.encode_texts(["a dog on a beach"])  # [1, dim], unit length
>>> engine = Engine(load_config(overrides={"data_dir": "./library-data", "model.name": "offline"}))
>>> for r in engine.search_text("a dog on a beach", k=5):
...     print(f"{r.score:.3f} {r.path}")

Names are imported lazily: ``import search`` stays cheap (no torch), which matters for the
indexer's decode workers that import ``search.preprocess``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Config": "search.config",
    "load_config": "search.config",
    "Engine": "search.engine",
    "Result": "search.results",
    "Encoder": "search.encoders",
    "load_encoder": "search.encoders",
    "Store": "search.store",
    "VectorIndex": "search.vectors",
    "PixseekError": "search.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
