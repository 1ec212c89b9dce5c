"""A library remembers its model: the model of its first vectors (written by the first
``index``) is the one later commands use unless a person names another. So a library
indexed with ``--model offline`` is searched with it without saying so again, and the
configured model is the default only for a new library."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.config import Config
from search.errors import InputError
from search.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine as SqlEngine


def first_model(store: Store | SqlEngine) -> str | None:
    """The model the library was first indexed with (its oldest vector's): one index seek."""
    return Store.first_model(store.engine if isinstance(store, Store) else store)


def adopt_model(config: Config, store: Store) -> Config:
    """``config`` with the library's model, unless a person chose one."""
    if config.model_chosen:
        return config
    model = first_model(store)
    if model is None or model == config.model.name:
        return config
    adopted = config.model_copy(update={"model": config.model.model_copy(update={"name": model})})
    adopted._model_chosen = False
    return adopted


def short_name(model_id: str) -> str:
    """What to type after --model for a stored model id."""
    from search.encoders.names import OFFLINE_MODEL_ID

    return "offline" if model_id == OFFLINE_MODEL_ID else model_id


def check_has_vectors(store: Store, model_id: str) -> None:
    """One line when the library holds vectors, none of them ``model_id``'s: which models it
    has, and how to index with this one."""
    counts = store.vector_counts()
    others = [(model, n) for model, n in counts if model != model_id and n]
    if not others or any(model == model_id for model, _ in counts):
        return
    have = ", ".join(f"{short_name(m)} ({n} photos)" for m, n in sorted(others))
    first = short_name(others[0][0])
    raise InputError(
        f"this library has no vectors for the model {short_name(model_id)}; it has {have}. "
        f"Search with --model {first} (or without --model), or index with this model: "
        f"pixseek --model {short_name(model_id)} index FOLDER")
