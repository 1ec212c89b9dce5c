"""One way to open what indexing needs: the data directory's lock, the store, the model
and the Indexer, closed in the reverse order whatever happens.

    with open_indexer(config) as indexer:
        indexer.index(["~/Pictures"])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from indexer.lock import IndexLock
from search import disk
from search.config import Config
from search.encoders import Encoder, load_encoder
from search.errors import StorageError
from search.files import cache_dir
from search.library import adopt_model
from search.relevance import text_reference
from search.store import Store


@contextmanager
def locked_store(config: Config) -> Iterator[Store]:
    """The store of ``config``, with this process as its one indexer: a second one on the
    same data directory is refused (see "Concurrency" in docs/architecture.md). A
    read-only library is refused in one line: searching it works, indexing cannot."""
    try:
        config.data_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = disk.storage_error(exc, config.data_path, 0)
        raise problem or StorageError(
            f"cannot create the data dir {config.data_path}: {exc.strerror or exc}"
        ) from None
    if not disk.writable(config.data_path):
        raise disk.read_only_error(config.data_path)
    with IndexLock(config.data_path), Store(config.db_url) as store:
        store.require_writable()
        yield store


@contextmanager
def open_indexer(
    config: Config, encoder: Encoder | None = None, progress: bool | None = None
) -> Iterator:
    """An Indexer over the locked store, with ``encoder`` or the configured model."""
    from indexer.pipeline import Indexer  # the pipeline pulls in numpy, faiss and workers
    from search.encoders.int8_calibration import library_photos

    with locked_store(config) as store:
        config = adopt_model(config, store)  # a library keeps the model it was indexed with
        pool = _early_pool(config, encoder)
        try:
            encoder = encoder or load_encoder(config.model, cache_dir=config.data_path,
                                              calibration_photos=lambda: library_photos(config))
        except BaseException:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            raise
        indexer = Indexer(config, store, encoder, progress=progress, pool=pool)
        try:
            yield indexer
        finally:
            indexer.close()
        # The relevance reference is built here, once per model (cached on disk), so that
        # the first search does not pay for it.
        text_reference(encoder, cache_dir())


def _early_pool(config: Config, encoder: Encoder | None):
    """Decode workers started now, so that they start up (a new Python each, importing
    Pillow and numpy: 0.2-0.3 s) while the model loads, not when the first photos wait for
    them. None where the run decodes elsewhere (Ray) or in-process (no workers)."""
    from indexer.decode import started_pool
    from search.encoders.base import pick_device

    if config.indexer.ray is not None:
        return None
    device = encoder.device if encoder is not None else pick_device(config.model.device)
    workers = config.indexer.worker_count(device)
    return started_pool(workers, device) if workers > 0 else None
