"""Milvus as the vector engine (``index.backend: milvus``): the same ``VectorIndex`` as
FAISS, held in a Milvus collection instead of a file in the data dir.

``index.milvus_uri`` is a Milvus server or cluster (``http://host:19530``, with
``user:password@`` if it needs them) or a local file (``/path/pixseek.milvus.db``) that
milvus-lite serves in process. The store stays the truth (architecture invariant 1):

- one collection per model, rows keyed by content id, so applying a change twice (two
  processes catching up at once, a crash between a write and its marks) is harmless;
- a second, one-row collection holds the marks (newest embedding and removal id) the
  vectors reflect; catching up applies what the store changed after them;
- a collection that disagrees with the store is repaired from it: a count that differs
  when a writer opens it (missing vectors added, extra ones deleted), or marks ahead of
  the store's (a replaced database: rebuilt). A vector the collection holds but the store
  lost meanwhile is never shown: search results are joined with the store.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from search.errors import ConfigError, DependencyError, first_line
from search.store import Removal, Store
from search.vectors.interface import Marks, VectorIndex

log = logging.getLogger(__name__)

INSTALL = "pip install 'pixseek[milvus]'"
# Milvus answers at most this many results per query (its topk limit).
MAX_K = 16384
# Rows per insert request: well under the server's default 64 MB message limit at 768-d.
WRITE_ROWS = 2048
MARKS_ROW = 0


def collection_name(model_id: str) -> str:
    """A valid collection name for a model id (hub ids and folders hold '/', '-', '.')."""
    return "pixseek_" + hashlib.blake2b(model_id.encode(), digest_size=8).hexdigest()


def redact(uri: str) -> str:
    """``uri`` without its password, for status and messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(uri: str):
    """A ``MilvusClient`` for ``uri``; one line when pymilvus is missing or the engine
    cannot be reached."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise DependencyError(f"index.backend milvus needs pymilvus: {INSTALL}") from None
    local = "://" not in uri
    if local:
        try:
            import milvus_lite  # noqa: F401 - serves a local file URI
        except ImportError:
            raise DependencyError(
                f"index.milvus_uri {uri!r} is a local file, which needs milvus-lite: "
                "pip install milvus-lite (or point milvus_uri at a Milvus server)"
            ) from None
        Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # milvus-lite's in-process server logs a traceback for each RPC it does not
        # implement (pymilvus probes a few); they are harmless, and not the user's business.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    try:
        return MilvusClient(uri)
    except Exception as exc:  # noqa: BLE001 - pymilvus raises its own and grpc's errors
        raise ConfigError(
            f"index.milvus_uri: cannot reach Milvus at {redact(uri)!r}: {first_line(exc)}"
        ) from None


class MilvusIndex(VectorIndex):
    """One model's vectors in a Milvus collection, following the store."""

    def __init__(self, store: Store, model_id: str, uri: str, verify: bool = True,
                 index_type: str = "FLAT") -> None:
        super().__init__(store, model_id)
        self.uri, self.verify, self.index_type = uri, verify, index_type
        self.client = connect(uri)
        self.name = collection_name(model_id)
        self.marks_name = self.name + "_marks"
        self.dim = 0
        self.rebuilt = False
        self._count: int | None = None
        self._persisted = Marks()

    # -- collections -------------------------------------------------------------------

    def _create(self, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        for name, width in ((self.name, dim), (self.marks_name, 2)):
            if self.client.has_collection(name):
                continue
            schema = MilvusClient.create_schema(auto_id=False, description=self.model_id)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=width)
            if name == self.marks_name:
                schema.add_field("embedding_mark", DataType.INT64)
                schema.add_field("removal_mark", DataType.INT64)
            params = self.client.prepare_index_params()
            # FLAT: exact inner product, as FAISS's flat kind; index.milvus_index_type picks
            # an approximate one for a cluster (docs/scale-out.md). The marks row is tiny.
            kind = self.index_type if name == self.name else "FLAT"
            params.add_index("vector", index_type=kind, metric_type="IP")
            # Strong: a search sees every write acknowledged before it, as FAISS does.
            self.client.create_collection(name, schema=schema, index_params=params,
                                          consistency_level="Strong")
        self.dim = dim

    def _exists(self) -> bool:
        return self.client.has_collection(self.name) and self.client.has_collection(
            self.marks_name)

    def _load(self) -> None:
        """Load both collections into memory: one another process made, or one left from
        an earlier run, is "released" and refuses queries until loaded."""
        for name in (self.name, self.marks_name):
            self.client.load_collection(name)

    def _read_marks(self) -> Marks:
        rows = self.client.query(self.marks_name, ids=[MARKS_ROW],
                                 output_fields=["embedding_mark", "removal_mark"])
        if not rows:
            return Marks()
        return Marks(int(rows[0]["embedding_mark"]), int(rows[0]["removal_mark"]))

    def _stored_dim(self) -> int:
        fields = self.client.describe_collection(self.name)["fields"]
        return int(next(f["params"]["dim"] for f in fields if f["name"] == "vector"))

    # -- the interface -----------------------------------------------------------------

    def open(self) -> MilvusIndex:
        self.rebuilt, self._count = False, None
        self.marks = Marks()
        if not self._exists():
            return self._rebuild_if_needed()
        self._load()
        self.dim = self._stored_dim()
        self.marks = self._persisted = self._read_marks()
        store_marks = self.store_marks()
        if self.marks.ahead_of(store_marks):
            log.warning("the Milvus collection is newer than the database; rebuilding")
            return self.rebuild()
        if not self.verify:
            self.catch_up(store_marks)
            return self
        count = self._catch_up_to_store()
        if self.count != count:
            # Other writers may be between their commit and their upsert: look again
            # before repairing a collection others are using.
            count = self._catch_up_to_store()
            self._count = None
        if self.count != count:
            log.warning("Milvus holds %d vectors, the database %d; repairing", self.count, count)
            self.repair()
        self.persist()
        return self

    def _catch_up_to_store(self) -> int:
        """Apply what the store changed; the store's vector count for this model."""
        embedding, removal, count = self.store.embedding_state(self.model_id)
        self.catch_up(Marks(embedding, removal))
        return count

    def repair(self) -> None:
        """Make the collection hold exactly the store's vectors: add the missing ones,
        delete the extra ones (vectors deleted behind pixseek's back, or a race). Reads
        every id once; done only when a count disagrees."""
        upto = self.store_marks()
        want: dict[int, tuple[int, np.ndarray]] = {}
        for emb_ids, ids, vectors in self.store.iter_embeddings(
                self.model_id, upto_id=upto.embedding):
            want.update((int(c), (int(e), v)) for e, c, v in zip(emb_ids, ids, vectors,
                                                                  strict=True))
        have: set[int] = set()
        it = self.client.query_iterator(self.name, batch_size=WRITE_ROWS, filter="",
                                        output_fields=["id"])
        while batch := it.next():
            have.update(int(row["id"]) for row in batch)
        it.close()
        extra = sorted(have - want.keys())
        missing = sorted(want.keys() - have)
        for start in range(0, len(extra), WRITE_ROWS):
            self.client.delete(self.name, ids=extra[start:start + WRITE_ROWS])
        if missing:
            self.add(np.array([want[c][0] for c in missing]), np.array(missing, np.int64),
                     np.stack([want[c][1] for c in missing]))
        self.marks, self._count = upto, None
        log.info("repaired Milvus collection %s: %d added, %d deleted",
                 self.name, len(missing), len(extra))

    def _rebuild_if_needed(self) -> MilvusIndex:
        if self.store.embedding_count(self.model_id) == 0:
            return self  # nothing yet: the collections come with the first vector
        return self.rebuild()

    def rebuild(self) -> MilvusIndex:
        """Drop the collections and load every vector from the store."""
        for name in (self.name, self.marks_name):
            if self.client.has_collection(name):
                self.client.drop_collection(name)
        self.marks, self._persisted, self._count, self.dim = Marks(), Marks(), None, 0
        self.catch_up()
        self.persist(force=True)
        self.rebuilt = True
        log.info("loaded %d vectors into Milvus collection %s", self.count, self.name)
        return self

    def add(self, embedding_ids: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if not self.dim:
            self._create(int(vectors.shape[1]))
        rows = [{"id": int(i), "vector": v}
                for i, v in zip(ids.tolist(), np.asarray(vectors, np.float32).tolist(),
                                strict=True)]
        for start in range(0, len(rows), WRITE_ROWS):
            # upsert: a row applied twice (another process caught up first) stays one row.
            self.client.upsert(self.name, rows[start:start + WRITE_ROWS])
        self._count = None

    def remove(self, removals: list[Removal]) -> None:
        if removals and self.dim:
            self.client.delete(self.name, ids=[int(r.content_id) for r in removals])
            self._count = None

    def search(
        self,
        queries: np.ndarray,
        k: int,
        ids: np.ndarray | None = None,
        exact: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        n = len(queries)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        found = np.full((n, k), -1, dtype=np.int64)
        if not self.dim or n == 0 or (ids is not None and len(ids) == 0):
            return scores, found
        kwargs = {}
        if ids is not None:
            kwargs["filter"] = f"id in {[int(i) for i in ids]}"
        hits = self.client.search(
            self.name, data=queries.tolist(), limit=min(k, MAX_K),
            output_fields=[], search_params={"metric_type": "IP"}, **kwargs)
        for row, result in enumerate(hits):
            for col, hit in enumerate(result):
                scores[row, col], found[row, col] = hit["distance"], hit["id"]
        return scores, found

    def persist(self, force: bool = False) -> bool:
        """Record the marks these vectors reflect (a one-row upsert)."""
        if not self.dim or (self.marks == self._persisted and not force):
            return False
        self.client.upsert(self.marks_name, [{
            "id": MARKS_ROW, "vector": [0.0, 0.0],
            "embedding_mark": self.marks.embedding, "removal_mark": self.marks.removal}])
        self._persisted = self.marks
        return True

    @property
    def count(self) -> int:
        if self._count is None:
            if not self.dim:
                return 0
            rows = self.client.query(self.name, filter="", output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"])
        return self._count

    def is_current(self) -> bool:
        if not self._exists():
            return self.store.embedding_count(self.model_id) == 0
        self._load()
        return not self._read_marks().behind(self.store_marks())

    def describe(self) -> dict:
        return {"kind": "milvus", "requested": f"{self.index_type} at {redact(self.uri)}",
                "uri": redact(self.uri), "collection": self.name,
                "index_type": self.index_type}

    def close(self) -> None:
        self.client.close()
