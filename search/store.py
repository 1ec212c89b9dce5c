"""The metadata store: the one source of truth (architecture invariant 1).

Three tables. ``contents`` is one row per distinct image content (blake2b of the bytes), so a
renamed, moved or duplicated file points at the content it already had (invariant 3).
``files`` is one row per path with the size and mtime that were read, its status and, for a
bad file, the reason. ``embeddings`` holds one vector per (content, model) (invariant 2).
The schema is created and upgraded only by Alembic (``migrations/``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Engine, Row, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from search import disk
from search.errors import ConfigError, DependencyError, PixseekError, StorageError, first_line
from search.places import bounding_box, distance_km

STATUS_OK = "ok"
STATUS_FAILED = "failed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Content(Base):
    __tablename__ = "contents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    taken_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    camera: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class File(Base):
    __tablename__ = "files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_id: Mapped[int | None] = mapped_column(
        ForeignKey("contents.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Embedding(Base):
    __tablename__ = "embeddings"
    __table_args__ = (
        UniqueConstraint("content_id", "model", name="uq_embedding_content_model"),
        Index("ix_embeddings_model_id", "model", "id"),
    )

    # Autoincrementing ids only grow, so "the highest id the vector index holds" tells how
    # far behind the store the index is (see search.vectors).
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    content_id: Mapped[int] = mapped_column(
        ForeignKey("contents.id", ondelete="CASCADE"), index=True
    )
    model: Mapped[str] = mapped_column(String(512), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class EmbeddingRemoval(Base):
    """One row per deleted embedding: the removals a vector index has yet to apply.

    Ids only grow (AUTOINCREMENT), like embedding ids, so a vector index catches up with
    "removals after the last one I applied" without comparing whole id sets.
    """

    __tablename__ = "embedding_removals"
    __table_args__ = (Index("ix_embedding_removals_model_id", "model", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(512))
    content_id: Mapped[int] = mapped_column(Integer)
    embedding_id: Mapped[int] = mapped_column(Integer)
    removed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ContentText(Base):
    """Text read from a content's pixels (OCR), tagged with the engine that read it. The
    full-text index over it is the migration's (FTS5 on SQLite, a GIN index on PostgreSQL)."""

    __tablename__ = "content_texts"

    content_id: Mapped[int] = mapped_column(
        ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True
    )
    engine: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # ok (text may be empty) | failed
    text: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ContentPlace(Base):
    """Where a content was taken (EXIF GPS) and the place's names; a row without a position
    records that the photo has none. ``source``: the geocoder data that named it."""

    __tablename__ = "content_places"
    __table_args__ = (Index("ix_content_places_position", "latitude", "longitude"),)

    content_id: Mapped[int] = mapped_column(
        ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(64))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    altitude: Mapped[float | None] = mapped_column(Float)
    city: Mapped[str | None] = mapped_column(String(128))
    area: Mapped[str | None] = mapped_column(String(128))
    region: Mapped[str | None] = mapped_column(String(128))
    country: Mapped[str | None] = mapped_column(String(128))
    country_code: Mapped[str | None] = mapped_column(String(8))
    place_key: Mapped[str | None] = mapped_column(Text)


class FileStat(Protocol):
    """What the store records of a file on disk (the indexer's scanned ``Seen``)."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class Removal:
    id: int  # the removal's own id (its place in the log)
    content_id: int
    embedding_id: int


@dataclass
class Collected:
    """What ``collect_orphans`` deleted: contents, and vectors per model."""

    contents: int = 0
    vectors: dict[str, int] = field(default_factory=dict)


@dataclass
class Photo:
    """What a search result shows of a content: its indexed paths (sorted) and metadata."""

    paths: list[str]
    width: int | None
    height: int | None
    taken_at: dt.datetime | None  # EXIF capture time (the camera's local time)
    camera: str | None
    hash: str = ""
    size: int = 0
    format: str | None = None
    mtime: dt.datetime | None = None  # the oldest of its files' modification times (local)

    @property
    def date(self) -> dt.datetime | None:
        """When the photo was taken: EXIF capture time, else the file's modification time."""
        return self.taken_at or self.mtime


@dataclass
class Filter:
    """Which photos a search may return; every part that is set must hold.

    Dates compare with EXIF capture time, else the file's modification time, both as the
    local time of this machine: ``after`` is inclusive, ``before`` exclusive.
    """

    after: dt.datetime | None = None
    before: dt.datetime | None = None
    folders: tuple[str, ...] = ()  # absolute paths: the photo's file is under one of them
    camera: str | None = None  # a case-insensitive part of the camera's make and model
    # Normalised place names (search.places.normalise): a city, area, region or country the
    # photo was taken in; several mean any of them.
    places: tuple[str, ...] = ()
    near: tuple[float, float, float] | None = None  # (lat, lon, km): taken within km
    tags: tuple[str, ...] = ()  # tag names the photo has, every one of them
    not_tags: tuple[str, ...] = ()  # tag names the photo must not have

    def __bool__(self) -> bool:
        return bool(self.after or self.before or self.folders or self.camera or self.places
                    or self.near or self.tags or self.not_tags)


def _ts_word(word: str) -> str:
    """A word as a PostgreSQL tsquery lexeme (quoted: no operator characters survive)."""
    return "'" + word.replace("'", "''").replace("\\", "") + "'"


def local_datetime(mtime_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(mtime_ns / 1e9).replace(microsecond=0)


def _local_ns(when: dt.datetime) -> int:
    return int(when.timestamp() * 1e9)  # a naive datetime is read as local time


def vector_to_blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def blob_to_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def _sqlite_pragmas(engine: Engine, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        if readonly:  # an immutable file: no journal, no locks to take
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            return
        # WAL: the web UI reads while the indexer writes. NORMAL is crash-safe under WAL
        # (a power cut may lose the last commits, never corrupt the file).
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


# PostgreSQL: the key of the transaction-level advisory lock that a transaction takes
# before it allocates embedding or removal ids (``order_ids``).
ID_ORDER_LOCK = 0x70697873  # "pixs"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for another database or memory)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def read_only_file(path: Path | None) -> bool:
    """Whether an existing SQLite file cannot be written (a read-only mount, a snapshot, a
    folder without write permission): it is then opened read-only."""
    if path is None or not path.exists():
        return False
    return not (disk.writable(path.parent) and os.access(path, os.W_OK))


def _create_engine(url: str, readonly: bool = False) -> Engine:
    """An engine for ``url``; ``postgresql://`` means psycopg 3 (the ``postgres`` extra).
    ``readonly`` opens a SQLite file as immutable: no journal or lock files to create."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database_url: {url!r} is not a database URL "
                          "(e.g. sqlite:///path/pixseek.db or postgresql://user@host/db)") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if readonly:
            uri = f"file:{quote(str(Path(parsed.database).resolve()))}?mode=ro&immutable=1"
            parsed = parsed.set(database=uri, query={"uri": "true"})
        else:
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the database folder {Path(parsed.database).parent}: "
                    f"{exc.strerror or exc}. Check database_url and --data-dir."
                ) from None
    try:
        # pre_ping: a server restarted under a long-running watcher or web UI costs one
        # reconnect, not an error.
        return create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except ImportError as exc:
        extra = "postgres" if parsed.get_backend_name() == "postgresql" else None
        hint = f"pip install 'pixseek[{extra}]'" if extra else f"install the driver ({exc.name})"
        raise DependencyError(
            f"database_url {parsed.render_as_string()!r} needs a driver that is not "
            f"installed: {hint}"
        ) from None


def order_ids(s: Session) -> None:
    """Make this transaction's new embedding and removal ids commit in id order.

    A vector index follows the store by "the highest id I hold" (search.vectors), which is
    exact only if no smaller id can commit after a larger one is seen. SQLite has one writer
    at a time, so that holds. PostgreSQL hands out sequence values to concurrent
    transactions that may commit in any order, so there every transaction that allocates
    such ids first takes one advisory lock, held until it commits or rolls back: the id
    ranges of writers on any number of hosts then follow their commit order.
    """
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ID_ORDER_LOCK})


def _insert_new(s: Session, model: type[Base]):
    """INSERT that skips rows whose unique key another writer committed meanwhile
    (PostgreSQL, where several indexers may write at once; SQLite has one writer)."""
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model).on_conflict_do_nothing()
    return insert(model)


class Store:
    """A database handle: ``with store.session() as s: ...`` commits or rolls back."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.readonly = read_only_file(self.path)
        self.engine = _create_engine(url, self.readonly)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine, self.readonly)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if upgrade:
            self.upgrade()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        from search.migrate import current_revision, head_revision, upgrade_to_head

        if self.readonly:
            if current_revision(self.engine) != head_revision():
                raise StorageError(
                    f"the database {self.path} is read-only and needs a schema upgrade: "
                    "run `pixseek db upgrade` on a writable copy"
                )
            return
        try:
            upgrade_to_head(self.engine)
        except OperationalError as exc:
            problem = self._storage_problem(exc)
            if problem is not None:
                raise problem from None
            reason = first_line(exc.orig) if exc.orig else str(exc)
            where = ("that the server is running and reachable"
                     if self.dialect != "sqlite" else "that the data directory is writable")
            raise PixseekError(
                f"cannot open the database {self.engine.url!r}: {reason}. "
                f"Check database_url and {where}."
            ) from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            problem = self._storage_problem(exc)
            if problem is None:
                raise
            raise problem from None

    def require_writable(self) -> None:
        """Refuse, in one line, work that writes (index, gc, watch) on a read-only library."""
        if self.readonly:
            raise disk.read_only_error(self.path or Path(str(self.engine.url)))

    def _storage_problem(self, exc: OperationalError) -> StorageError | None:
        """A full disk or read-only file as one line naming it; None for anything else.
        SQLite rolls the transaction back, so the file stays whole."""
        message = str(exc.orig or exc).lower()
        path = self.path or Path(str(self.engine.url))
        # SQLite says "disk I/O error" when it cannot even grow its shared-memory file.
        cramped = self.path is not None and disk.free_bytes(path.parent) < 2**20
        if "disk is full" in message or ("disk i/o error" in message and cramped):
            size = path.stat().st_size if self.path and self.path.exists() else 0
            return disk.full_error(path, 64 * 2**20 + size // 100)
        if "readonly database" in message or "read-only" in message:
            return disk.read_only_error(path)
        return None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # -- writes shared by the indexer and the benchmarks ---------------------------------

    @staticmethod
    def insert_contents(s: Session, rows: list[dict]) -> list[int]:
        """Insert contents (dicts of ``Content`` columns, distinct hashes) in one statement;
        their new ids, in the order given. (Ids are looked up by hash: SQLAlchemy's ordered
        RETURNING over many rows took 150 s for 20k rows here.)"""
        if not rows:
            return []
        now = utcnow()
        s.execute(_insert_new(s, Content), [{"created_at": now, **row} for row in rows])
        hashes = [row["hash"] for row in rows]
        ids: dict[str, int] = {}
        for start in range(0, len(hashes), 500):
            ids.update(
                s.execute(
                    select(Content.hash, Content.id).where(
                        Content.hash.in_(hashes[start:start + 500])
                    )
                ).all()
            )
        return [ids[h] for h in hashes]

    @staticmethod
    def insert_embeddings(
        s: Session, model: str, content_ids: list[int], vectors: np.ndarray
    ) -> None:
        """One vector of ``model`` per content, in one statement."""
        if not content_ids:
            return
        order_ids(s)
        now = utcnow()
        s.execute(
            _insert_new(s, Embedding),
            [
                {"content_id": cid, "model": model, "dim": len(vec),
                 "vector": vector_to_blob(vec), "created_at": now}
                for cid, vec in zip(content_ids, vectors, strict=True)
            ],
        )

    # -- the indexing pipeline's reads and writes (in the caller's transaction) -----------

    @staticmethod
    def file_states(s: Session, paths: list[str]) -> dict[str, Row]:
        """The stored (path, size, mtime_ns, status, content_id) of those of ``paths`` the
        store knows, by path."""
        if not paths:
            return {}
        return {
            r.path: r
            for r in s.execute(
                select(File.path, File.size, File.mtime_ns, File.status, File.content_id)
                .where(File.path.in_(paths))
            ).all()
        }

    @staticmethod
    def contents_with_vector(s: Session, model: str, content_ids: list[int]) -> set[int]:
        """Those of ``content_ids`` that have a vector of ``model``."""
        if not content_ids:
            return set()
        return set(
            s.execute(
                select(Embedding.content_id).where(
                    Embedding.model == model, Embedding.content_id.in_(content_ids)
                )
            ).scalars()
        )

    @staticmethod
    def content_hashes(s: Session, content_ids: list[int]) -> dict[int, str]:
        """The hash of each of ``content_ids``."""
        if not content_ids:
            return {}
        return dict(s.execute(select(Content.id, Content.hash)
                              .where(Content.id.in_(content_ids))).all())

    @staticmethod
    def content_ids_by_hash(s: Session, hashes: list[str]) -> dict[str, int]:
        """The id of each stored content among ``hashes``, by hash."""
        if not hashes:
            return {}
        return dict(
            s.execute(select(Content.hash, Content.id).where(Content.hash.in_(hashes))).all()
        )

    @staticmethod
    def upsert_files(s: Session, items: list[tuple[FileStat, int | None, str, str | None]]
                     ) -> set[int]:
        """Write the file rows (stat, content id, status, error), new or updated; the
        contents these files pointed at before and no longer do (edited, or unreadable)."""
        unlinked: set[int] = set()
        if not items:
            return unlinked
        existing = {
            f.path: f
            for f in s.execute(
                select(File).where(File.path.in_([seen.path for seen, *_ in items]))
            ).scalars()
        }
        for seen, cid, status, error in items:
            row = existing.get(seen.path)
            if row is None:
                row = File(path=seen.path)
                s.add(row)
                existing[seen.path] = row
            if row.content_id is not None and row.content_id != cid:
                unlinked.add(row.content_id)
            row.size, row.mtime_ns = seen.size, seen.mtime_ns
            row.content_id, row.status, row.error = cid, status, error
            row.updated_at = utcnow()
        return unlinked

    @staticmethod
    def files_under(s: Session, prefix: str, after: str, limit: int) -> list[Row]:
        """(id, path, content_id) of up to ``limit`` files whose path starts with ``prefix``
        and sorts after ``after``, in path order: one page of a walk over a folder's rows."""
        return list(s.execute(
            select(File.id, File.path, File.content_id)
            .where(File.path.startswith(prefix, autoescape=True), File.path > after)
            .order_by(File.path)
            .limit(limit)
        ).all())

    @staticmethod
    def delete_files(s: Session, file_ids: list[int]) -> None:
        """Delete file rows (their contents stay until ``collect_orphans``)."""
        if file_ids:
            s.execute(delete(File).where(File.id.in_(file_ids)))

    # -- queries shared by the indexer, the engine and the CLI ---------------------------

    def embedding_state(self, model: str) -> tuple[int, int, int]:
        """(newest embedding id, newest removal id, vector count) of a model, read in one
        statement so the three agree even while another process writes. The count scans
        the model's index: fine when opening, too slow per query at a million photos."""
        newest_removal = (
            select(func.max(EmbeddingRemoval.id))
            .where(EmbeddingRemoval.model == model)
            .scalar_subquery()
        )
        with self.session() as s:
            row = s.execute(
                select(func.max(Embedding.id), newest_removal, func.count())
                .where(Embedding.model == model)
            ).one()
        return int(row[0] or 0), int(row[1] or 0), int(row[2])

    def embedding_count(self, model: str) -> int:
        return self.embedding_state(model)[2]

    # -- what the library holds, in a few index seeks --------------------------------------

    @staticmethod
    def first_model(engine: Engine) -> str | None:
        """The model of the library's oldest vector: one index seek. Takes an engine, so a
        read-only one (``pixseek doctor``) will do."""
        with engine.connect() as conn:
            return conn.execute(select(Embedding.model).order_by(Embedding.id).limit(1)).scalar()

    def vector_counts(self) -> list[tuple[str, int]]:
        """(model, vectors) for every model the library has vectors of."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Embedding.model, func.count()).group_by(Embedding.model))
            return [(model, int(n)) for model, n in rows]

    def path_range(self) -> tuple[str | None, str | None]:
        """The smallest and the largest indexed path: two seeks on the paths' unique index."""
        with self.engine.connect() as conn:
            low, high = conn.execute(select(func.min(File.path), func.max(File.path))).one()
        return low, high

    def newest_place(self) -> int | None:
        """The newest content id with a place read: one seek, a change mark for places."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(ContentPlace.content_id))).scalar()

    def places_and_cameras(self) -> tuple[list[tuple], list[str]]:
        """(city, region, country) of every place, and every camera, that a photo with a
        live file has: the words a query can name (``search.understand``)."""
        live_place = exists().where(File.content_id == ContentPlace.content_id,
                                    File.status == STATUS_OK)
        live_camera = exists().where(File.content_id == Content.id, File.status == STATUS_OK)
        with self.session() as s:
            places = s.execute(
                select(ContentPlace.city, ContentPlace.region, ContentPlace.country)
                .where(ContentPlace.latitude.is_not(None), live_place)
                .group_by(ContentPlace.city, ContentPlace.region, ContentPlace.country)).all()
            cameras = s.scalars(
                select(Content.camera).where(Content.camera.is_not(None), live_camera)
                .group_by(Content.camera)).all()
        return [tuple(row) for row in places], list(cameras)

    def change_marks(self, model: str) -> tuple[int, int]:
        """(newest embedding id, newest removal id) of a model: two index seeks, whatever
        the library size. A vector index that reflects both marks reflects the store.
        (A server asks before every query, so this skips the ORM session: 0.2 ms, not 3.)"""
        with self.engine.connect() as conn:
            vector = conn.execute(self._newest_vector, {"model": model}).scalar()
            removal = conn.execute(self._newest_removal, {"model": model}).scalar()
        return int(vector or 0), int(removal or 0)

    _newest_vector = (
        select(func.max(Embedding.id)).where(Embedding.model == bindparam("model"))
    )
    _newest_removal = (
        select(func.max(EmbeddingRemoval.id)).where(EmbeddingRemoval.model == bindparam("model"))
    )

    def iter_embeddings(
        self, model: str, after_id: int = 0, upto_id: int | None = None, chunk: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Stream (embedding ids, content ids, vectors) with ``after_id < id <= upto_id``,
        in id order, chunk by chunk (memory stays bounded)."""
        last = after_id
        while True:
            query = (
                select(Embedding.id, Embedding.content_id, Embedding.vector)
                .where(Embedding.model == model, Embedding.id > last)
                .order_by(Embedding.id)
                .limit(chunk)
            )
            if upto_id is not None:
                query = query.where(Embedding.id <= upto_id)
            with self.session() as s:
                rows = s.execute(query).all()
            if not rows:
                return
            last = rows[-1][0]
            emb_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), -1)
            yield emb_ids, ids, vecs

    def removals_since(
        self, model: str, after_id: int, upto_id: int | None = None
    ) -> list[Removal]:
        """Embeddings of ``model`` deleted after removal ``after_id`` (up to ``upto_id``)."""
        query = (
            select(EmbeddingRemoval.id, EmbeddingRemoval.content_id, EmbeddingRemoval.embedding_id)
            .where(EmbeddingRemoval.model == model, EmbeddingRemoval.id > after_id)
            .order_by(EmbeddingRemoval.id)
        )
        if upto_id is not None:
            query = query.where(EmbeddingRemoval.id <= upto_id)
        with self.session() as s:
            rows = s.execute(query).all()
        return [Removal(*row) for row in rows]

    def collect_orphans(self, candidates: Iterable[int] | None = None) -> Collected:
        """Delete contents no file points at any more, with their vectors; log the removals.

        ``candidates`` limits the check to these content ids (the ones an indexing run
        unlinked), which stays cheap at any library size; None checks every content.
        """
        collected = Collected()
        orphaned = ~exists().where(File.content_id == Content.id)
        if candidates is None:
            batches: Iterator[list[int] | None] = iter([None])
        else:
            ids = sorted(set(candidates))
            batches = (ids[i:i + 500] for i in range(0, len(ids), 500))
        for batch in batches:
            with self.session() as s:
                query = select(Content.id).where(orphaned)
                if batch is not None:
                    query = query.where(Content.id.in_(batch))
                gone = list(s.execute(query).scalars())
                for start in range(0, len(gone), 500):
                    self._delete_contents(s, gone[start:start + 500], collected)
        return collected

    @staticmethod
    def _delete_contents(s: Session, content_ids: list[int], collected: Collected) -> None:
        """Delete contents and their embeddings, logging each embedding's removal."""
        if not content_ids:
            return
        vectors = s.execute(
            select(Embedding.id, Embedding.model, Embedding.content_id)
            .where(Embedding.content_id.in_(content_ids))
        ).all()
        if vectors:
            order_ids(s)
            now = utcnow()
            s.execute(
                insert(EmbeddingRemoval),
                [
                    {"model": model, "content_id": cid, "embedding_id": eid, "removed_at": now}
                    for eid, model, cid in vectors
                ],
            )
            s.execute(delete(Embedding).where(Embedding.content_id.in_(content_ids)))
        # Explicitly, not by cascade: the full-text index follows the rows' delete trigger.
        s.execute(delete(ContentText).where(ContentText.content_id.in_(content_ids)))
        s.execute(delete(ContentPlace).where(ContentPlace.content_id.in_(content_ids)))
        s.execute(delete(Content).where(Content.id.in_(content_ids)))
        collected.contents += len(content_ids)
        for _eid, model, _cid in vectors:
            collected.vectors[model] = collected.vectors.get(model, 0) + 1

    def photos(self, content_ids: Iterable[int]) -> dict[int, Photo]:
        """Indexed paths and metadata of each content that still has a file: one query
        (what every search result needs, so it is kept to one round trip)."""
        ids = list(content_ids)
        out: dict[int, Photo] = {}
        for start in range(0, len(ids), 500):
            with self.session() as s:
                rows = s.execute(
                    select(File.content_id, File.path, File.mtime_ns, Content.width,
                           Content.height, Content.taken_at, Content.camera, Content.hash,
                           Content.size, Content.format)
                    .join(Content, Content.id == File.content_id)
                    .where(File.content_id.in_(ids[start:start + 500]), File.status == STATUS_OK)
                    .order_by(File.path)
                ).all()
            for cid, path, mtime_ns, *meta in rows:
                mtime = local_datetime(mtime_ns)
                if cid not in out:
                    out[cid] = Photo([], *meta, mtime=mtime)
                out[cid].paths.append(path)
                out[cid].mtime = min(out[cid].mtime or mtime, mtime)
        return out

    def filtered_contents(
        self, model: str, where: Filter, among: Iterable[int] | None = None
    ) -> np.ndarray:
        """Ids of the contents with a vector for ``model`` and an indexed file that passes
        ``where``, sorted; ``among`` checks only those ids (a search's candidates)."""
        conditions = [File.status == STATUS_OK]
        dated = Content.taken_at.is_not(None)
        if where.after:
            conditions.append(or_(and_(dated, Content.taken_at >= where.after),
                                  and_(~dated, File.mtime_ns >= _local_ns(where.after))))
        if where.before:
            conditions.append(or_(and_(dated, Content.taken_at < where.before),
                                  and_(~dated, File.mtime_ns < _local_ns(where.before))))
        if where.folders:
            # A range on the path's unique index ("/a/b/" <= path < "/a/b0"; "0" follows
            # "/"), where LIKE 'prefix%' would read every row. The range needs byte order:
            # PostgreSQL compares by the database's locale unless told "C".
            path = File.path if self.dialect == "sqlite" else File.path.collate("C")
            conditions.append(or_(*(
                and_(path >= folder.rstrip("/") + "/", path < folder.rstrip("/") + "0")
                for folder in where.folders
            )))
        if where.camera:
            conditions.append(
                func.lower(Content.camera).contains(where.camera.lower(), autoescape=True)
            )
        if where.places:
            conditions.append(exists().where(
                ContentPlace.content_id == Content.id,
                or_(*(ContentPlace.place_key.contains(f"|{p}|", autoescape=True)
                      for p in where.places))))
        if where.near:
            lat_min, lat_max, lon_min, lon_max = bounding_box(*where.near)
            conditions.append(exists().where(
                ContentPlace.content_id == Content.id,
                ContentPlace.latitude.between(lat_min, lat_max),
                ContentPlace.longitude.between(lon_min, lon_max)))
        conditions += tag_conditions(where)
        has_vector = exists().where(Embedding.content_id == Content.id, Embedding.model == model)
        query = (select(Content.id).distinct().join(File, File.content_id == Content.id)
                 .where(*conditions, has_vector))
        found: set[int] = set()
        with self.session() as s:
            if among is None:
                found.update(s.scalars(query))
            else:
                ids = list(among)
                for start in range(0, len(ids), 500):
                    found.update(s.scalars(query.where(Content.id.in_(ids[start:start + 500]))))
        if where.near and found:  # the box let corners in: the exact distance decides
            lat, lon, km = where.near
            positions = self.positions(found)
            found = {cid for cid in found if cid in positions
                     and distance_km((lat, lon), positions[cid]) <= km}
        return np.asarray(sorted(found), dtype=np.int64)

    def vectors(self, model: str, content_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """The stored vectors of these contents for ``model``."""
        ids = list(content_ids)
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            with self.session() as s:
                rows = s.execute(
                    select(Embedding.content_id, Embedding.vector)
                    .where(Embedding.model == model,
                           Embedding.content_id.in_(ids[start:start + 500]))
                ).all()
            out.update((cid, blob_to_vector(blob)) for cid, blob in rows)
        return out

    def sample_vectors(self, model: str, n: int, seed: int = 0) -> np.ndarray:
        """About n of a model's vectors, spread over the library: ids drawn at random
        below the newest, so no full scan (ids freed by deletions just miss)."""
        newest = self.change_marks(model)[0]
        rng = np.random.default_rng(seed)
        wanted = np.unique(rng.integers(1, newest + 1, size=min(n, newest)))
        blobs: list[bytes] = []
        for start in range(0, len(wanted), 500):
            with self.session() as s:
                blobs += s.scalars(
                    select(Embedding.vector).where(
                        Embedding.model == model,
                        Embedding.id.in_(wanted[start:start + 500].tolist()))
                ).all()
        if not blobs:
            return np.zeros((0, 0), dtype=np.float32)
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1)

    def content(self, content_id: int) -> Content | None:
        with self.session() as s:
            return s.get(Content, content_id)

    def vectors_for_paths(
        self, model: str, paths: list[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """({path: vector} of ``model`` for these files, {path: reason} of those that
        failed)."""
        found: dict[str, np.ndarray] = {}
        failed: dict[str, str] = {}
        for start in range(0, len(paths), 500):
            part = paths[start:start + 500]
            with self.session() as s:
                for path, vec in s.execute(
                    select(File.path, Embedding.vector)
                    .join(Embedding, Embedding.content_id == File.content_id)
                    .where(File.path.in_(part), Embedding.model == model)
                ):
                    found[path] = blob_to_vector(vec)
                for path, error in s.execute(
                    select(File.path, File.error)
                    .where(File.path.in_(part), File.status == STATUS_FAILED)
                ):
                    failed[path] = error
        return found, failed

    def library_counts(self, max_failures: int = 100) -> dict:
        """Files seen and failed (the first failures with reasons), and per model its
        vectors and the indexed files it has a vector for."""
        with self.session() as s:
            files = s.scalar(select(func.count(File.id))) or 0
            failed = s.scalar(select(func.count(File.id)).where(File.status == STATUS_FAILED))
            failures = [
                {"path": p, "error": e}
                for p, e in s.execute(
                    select(File.path, File.error)
                    .where(File.status == STATUS_FAILED)
                    .order_by(File.path)
                    .limit(max_failures)
                )
            ]
            per_model = {}
            for model, vectors in s.execute(
                select(Embedding.model, func.count(Embedding.id)).group_by(Embedding.model)
            ):
                # EXISTS probes the (content, model) unique index per file: 0.7 s at 1M
                # photos, where a join took 2.7 s.
                has_vector = exists().where(
                    Embedding.content_id == File.content_id, Embedding.model == model
                )
                indexed = s.scalar(
                    select(func.count(File.id)).where(File.status == STATUS_OK, has_vector)
                )
                per_model[model] = {"vectors": vectors, "files_indexed": indexed}
        return {"files": files, "failed": failed or 0, "failures": failures,
                "models": per_model}

    # -- text read from photos (OCR) -------------------------------------------------------

    def contents_needing_text(
        self, engine: str, after_id: int, limit: int
    ) -> list[tuple[int, str]]:
        """(content id, one of its paths) of indexed contents ``engine`` has not read yet,
        in id order after ``after_id``: the OCR stage's queue."""
        return self._unread(ContentText.engine == engine, ContentText, after_id, limit)

    def _unread(self, made_by, table, after_id: int, limit: int) -> list[tuple[int, str]]:
        """(content id, one of its paths) of indexed contents after ``after_id`` with no
        row in ``table`` (ContentText, ContentPlace) that ``made_by`` matches, in id order."""
        read = exists().where(table.content_id == Content.id, made_by)
        with self.session() as s:
            rows = s.execute(
                select(Content.id, func.min(File.path))
                .join(File, File.content_id == Content.id)
                .where(File.status == STATUS_OK, Content.id > after_id, ~read)
                .group_by(Content.id).order_by(Content.id).limit(limit)
            ).all()
        return [(int(cid), path) for cid, path in rows]

    def _newest(self, made_by, table) -> int:
        """The highest content id with a row in ``table`` that ``made_by`` matches (0: none)."""
        with self.session() as s:
            found = s.scalar(select(table.content_id).where(made_by)
                             .order_by(table.content_id.desc()).limit(1))
        return int(found or 0)

    def _replace(self, table, rows: list[dict]) -> None:
        """Replace the rows of these contents in ``table``; a content deleted meanwhile is
        skipped."""
        ids = [row["content_id"] for row in rows]
        with self.session() as s:
            live = set(s.scalars(select(Content.id).where(Content.id.in_(ids))))
            s.execute(delete(table).where(table.content_id.in_(ids)))
            kept = [row for row in rows if row["content_id"] in live]
            if kept:
                s.execute(insert(table), kept)

    def newest_text_read(self, engine: str) -> int:
        """The highest content id ``engine`` has read (0: none). Contents get growing ids,
        so the OCR stage's queue starts past it: an index run with nothing new to read
        costs one backwards step of the primary key, not a pass over every content."""
        return self._newest(ContentText.engine == engine, ContentText)

    def save_texts(self, rows: list[dict]) -> None:
        """Replace the texts of these contents (dicts of ``ContentText`` columns); a content
        deleted meanwhile is skipped."""
        if rows:
            now = utcnow()
            self._replace(ContentText, [{"created_at": now, "error": None, **r} for r in rows])

    def texts(self, content_ids: Iterable[int]) -> dict[int, str]:
        """The non-empty texts read from these contents."""
        ids = list(content_ids)
        out: dict[int, str] = {}
        with self.session() as s:
            for start in range(0, len(ids), 500):
                out.update(s.execute(
                    select(ContentText.content_id, ContentText.text).where(
                        ContentText.content_id.in_(ids[start:start + 500]),
                        ContentText.status == "ok", ContentText.text != "")
                ).all())
        return out

    def text_search(self, words: list[str], limit: int) -> list[tuple[int, float]]:
        """Contents whose text holds any of ``words``, best first: (content id, relevance,
        higher is better). SQLite: FTS5's bm25; PostgreSQL: ts_rank over the GIN index."""
        if not words:
            return []
        with self.session() as s:
            if self.dialect == "sqlite":
                match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
                rows = s.execute(text(
                    "SELECT rowid, -bm25(content_texts_fts) FROM content_texts_fts "
                    "WHERE content_texts_fts MATCH :match ORDER BY bm25(content_texts_fts) "
                    "LIMIT :limit"), {"match": match, "limit": limit}).all()
            else:
                rows = s.execute(text(
                    "SELECT content_id, ts_rank(to_tsvector('simple', text), q) AS r "
                    "FROM content_texts, to_tsquery('simple', :q) q "
                    "WHERE to_tsvector('simple', text) @@ q ORDER BY r DESC, content_id "
                    "LIMIT :limit"), {"q": " | ".join(_ts_word(w) for w in words),
                                      "limit": limit}).all()
        return [(int(cid), float(score)) for cid, score in rows]

    def text_counts(self) -> dict:
        """Contents whose text was read, per engine and status."""
        with self.session() as s:
            rows = s.execute(
                select(ContentText.engine, ContentText.status, func.count())
                .group_by(ContentText.engine, ContentText.status)
            ).all()
        out: dict[str, dict[str, int]] = {}
        for engine, status, count in rows:
            out.setdefault(engine, {})[status] = count
        return out

    # -- places (EXIF GPS) -----------------------------------------------------------------

    def contents_needing_place(
        self, source: str, after_id: int, limit: int
    ) -> list[tuple[int, str]]:
        """(content id, one of its paths) of indexed contents whose place was not read with
        the geocoder data ``source``: the place stage's queue (new photos, and every photo
        of a library indexed before places existed)."""
        return self._unread(ContentPlace.source == source, ContentPlace, after_id, limit)

    def newest_place_read(self, source: str) -> int:
        """The highest content id whose place was read with ``source`` (0: none); see
        ``newest_text_read``."""
        return self._newest(ContentPlace.source == source, ContentPlace)

    def save_places(self, rows: list[dict]) -> None:
        """Replace the place rows of these contents (dicts of ``ContentPlace`` columns)."""
        if rows:
            self._replace(ContentPlace, rows)

    def positions(self, content_ids: Iterable[int]) -> dict[int, tuple[float, float]]:
        ids = list(content_ids)
        out: dict[int, tuple[float, float]] = {}
        with self.session() as s:
            for start in range(0, len(ids), 500):
                out.update((cid, (lat, lon)) for cid, lat, lon in s.execute(
                    select(ContentPlace.content_id, ContentPlace.latitude,
                           ContentPlace.longitude).where(
                        ContentPlace.content_id.in_(ids[start:start + 500]),
                        ContentPlace.latitude.is_not(None))))
        return out

    def place(self, content_id: int) -> dict | None:
        """Where a content was taken: position and names (None: unknown)."""
        with self.session() as s:
            row = s.get(ContentPlace, content_id)
        if row is None or row.latitude is None:
            return None
        return {"latitude": row.latitude, "longitude": row.longitude, "altitude": row.altitude,
                "city": row.city, "area": row.area, "region": row.region,
                "country": row.country, "country_code": row.country_code}

    def place_facets(self) -> dict:
        """Countries and cities with photos there, and how many."""
        live = exists().where(File.content_id == ContentPlace.content_id,
                              File.status == STATUS_OK)
        with self.session() as s:
            countries = s.execute(
                select(ContentPlace.country, func.count())
                .where(ContentPlace.country.is_not(None), live)
                .group_by(ContentPlace.country).order_by(ContentPlace.country)).all()
            cities = s.execute(
                select(ContentPlace.city, ContentPlace.country, func.count())
                .where(ContentPlace.city.is_not(None), live)
                .group_by(ContentPlace.city, ContentPlace.country)
                .order_by(ContentPlace.city)).all()
        return {"countries": [{"name": c, "count": n} for c, n in countries],
                "cities": [{"name": c, "country": k, "count": n} for c, k, n in cities]}

    def content_for_path(self, path: str) -> int | None:
        """The content id an indexed file has, or None."""
        with self.session() as s:
            return s.scalar(
                select(File.content_id).where(File.path == path, File.status == STATUS_OK)
            )

    def has_photos_under(self, folder: str, model: str) -> bool:
        """Whether an indexed file with a vector for ``model`` lies under ``folder`` (an
        absolute path): one seek on the path index, as ``filtered_contents`` ranges it."""
        path = File.path if self.dialect == "sqlite" else File.path.collate("C")
        prefix = folder.rstrip("/")
        with self.session() as s:
            return s.execute(
                select(File.id).where(
                    File.status == STATUS_OK, path >= prefix + "/", path < prefix + "0",
                    exists().where(Embedding.content_id == File.content_id,
                                   Embedding.model == model))
                .limit(1)
            ).first() is not None

    def facets(self) -> dict:
        """What there is to filter by: folders that hold photos (with counts), cameras
        (with counts) and the range of photo dates."""
        folders: dict[str, int] = {}
        with self.session() as s:
            for (path,) in s.execute(
                select(File.path).where(File.status == STATUS_OK).execution_options(
                    yield_per=10_000)
            ):
                folder = path.rsplit("/", 1)[0] or "/"
                folders[folder] = folders.get(folder, 0) + 1
            cameras = s.execute(
                select(Content.camera, func.count(Content.id))
                .where(Content.camera.is_not(None), exists().where(
                    File.content_id == Content.id, File.status == STATUS_OK))
                .group_by(Content.camera).order_by(Content.camera)
            ).all()
            taken = s.execute(
                select(func.min(Content.taken_at), func.max(Content.taken_at))
                .join(File, File.content_id == Content.id).where(File.status == STATUS_OK)
            ).one()
            undated = s.execute(
                select(func.min(File.mtime_ns), func.max(File.mtime_ns))
                .join(Content, Content.id == File.content_id)
                .where(File.status == STATUS_OK, Content.taken_at.is_(None))
            ).one()
        dates = [d for d in taken if d is not None]
        dates += [local_datetime(ns) for ns in undated if ns is not None]
        return {
            "folders": [{"path": f, "count": n} for f, n in sorted(folders.items())],
            "cameras": [{"name": c, "count": n} for c, n in cameras],
            "dates": {"oldest": min(dates) if dates else None,
                      "newest": max(dates) if dates else None},
            "places": self.place_facets(),
        }

    def paths_for_contents(self, content_ids: Iterable[int]) -> dict[int, list[str]]:
        """Indexed paths of each content, sorted, for contents that still have a file."""
        ids = list(content_ids)
        out: dict[int, list[str]] = {}
        for start in range(0, len(ids), 500):
            with self.session() as s:
                rows = s.execute(
                    select(File.content_id, File.path)
                    .where(File.content_id.in_(ids[start:start + 500]), File.status == STATUS_OK)
                    .order_by(File.path)
                ).all()
            for cid, path in rows:
                out.setdefault(cid, []).append(path)
        return out

    # -- tags taught by example (search.tags fits them) -----------------------------------

    def tag(self, name: str) -> Tag | None:
        with self.session() as s:
            return s.scalar(select(Tag).where(Tag.name == name))

    def all_tags(self) -> list[tuple[Tag, int]]:
        """Every tag, by name, with its member count."""
        counts = (select(TagMember.tag_id, func.count().label("n"))
                  .group_by(TagMember.tag_id).subquery())
        with self.session() as s:
            rows = s.execute(select(Tag, func.coalesce(counts.c.n, 0))
                             .outerjoin(counts, counts.c.tag_id == Tag.id)
                             .order_by(Tag.name)).all()
        return [(tag, int(n)) for tag, n in rows]

    def teach_tag(self, name: str, positives: Iterable[int] = (), negatives: Iterable[int] = (),
                  prompts: Iterable[str] = ()) -> Tag:
        """Add examples and prompts to a tag (made if new) and raise its version; a photo
        given again takes its latest side. Its classifier must then be fitted again."""
        sides = {int(c): True for c in positives}
        sides.update({int(c): False for c in negatives})
        with self.session() as s:
            tag = s.scalar(select(Tag).where(Tag.name == name))
            if tag is None:
                tag = Tag(name=name, version=0, prompts="[]", applied_upto=0,
                          created_at=utcnow())
                s.add(tag)
                s.flush()
            tag.prompts = json.dumps(list(dict.fromkeys(
                [*json.loads(tag.prompts), *(p.strip() for p in prompts if p.strip())])))
            if sides:
                s.execute(delete(TagExample).where(TagExample.tag_id == tag.id,
                                                   TagExample.content_id.in_(list(sides))))
                now = utcnow()
                s.execute(insert(TagExample), [
                    {"tag_id": tag.id, "content_id": cid, "positive": pos, "created_at": now}
                    for cid, pos in sides.items()])
            tag.version += 1
            tag.weights, tag.applied_upto = None, 0
        return tag

    def tag_examples(self, tag_id: int) -> dict[int, bool]:
        """{content id: positive} of a tag's examples."""
        with self.session() as s:
            return dict(s.execute(select(TagExample.content_id, TagExample.positive)
                                  .where(TagExample.tag_id == tag_id)).all())

    def fit_tag(self, tag_id: int, version: int, model: str, weights: np.ndarray, bias: float,
                threshold: float) -> bool:
        """Store the classifier fitted for this version (False: the tag changed meanwhile)."""
        with self.session() as s:
            tag = s.get(Tag, tag_id)
            if tag is None or tag.version != version:
                return False
            tag.model, tag.weights = model, vector_to_blob(weights)
            tag.bias, tag.threshold, tag.applied_upto = float(bias), float(threshold), 0
        return True

    def save_tag_members(self, tag_id: int, version: int, rows: list[tuple[int, float]],
                         upto: int, replace: bool) -> bool:
        """Record the members scored by this version, up to embedding id ``upto``; ``replace``
        drops the earlier members first (one transaction). False: the tag changed meanwhile."""
        with self.session() as s:
            tag = s.get(Tag, tag_id)
            if tag is None or tag.version != version:
                return False
            if replace:
                s.execute(delete(TagMember).where(TagMember.tag_id == tag_id))
            else:
                s.execute(delete(TagMember).where(
                    TagMember.tag_id == tag_id,
                    TagMember.content_id.in_([cid for cid, _ in rows])))
            live = set()
            ids = [cid for cid, _ in rows]
            for start in range(0, len(ids), 500):
                live.update(s.scalars(select(Content.id).where(
                    Content.id.in_(ids[start:start + 500]))))
            kept = [{"tag_id": tag_id, "content_id": cid, "score": float(score),
                     "version": version} for cid, score in rows if cid in live]
            for start in range(0, len(kept), 10_000):
                s.execute(insert(TagMember), kept[start:start + 10_000])
            tag.applied_upto = max(int(upto), tag.applied_upto if not replace else 0)
        return True

    def tag_members(self, tag_id: int) -> list[tuple[int, float]]:
        """(content id, score) of a tag's members, best first."""
        with self.session() as s:
            rows = s.execute(select(TagMember.content_id, TagMember.score)
                             .where(TagMember.tag_id == tag_id)
                             .order_by(TagMember.score.desc(), TagMember.content_id)).all()
        return [(int(c), float(v)) for c, v in rows]

    def delete_tag(self, name: str) -> bool:
        with self.session() as s:
            tag = s.scalar(select(Tag).where(Tag.name == name))
            if tag is None:
                return False
            # Explicitly: a SQLite connection without foreign keys would not cascade.
            s.execute(delete(TagMember).where(TagMember.tag_id == tag.id))
            s.execute(delete(TagExample).where(TagExample.tag_id == tag.id))
            s.delete(tag)
        return True

    def tag_facets(self) -> list[dict]:
        """Tags with photos, and how many."""
        return [{"name": tag.name, "count": n} for tag, n in self.all_tags() if n]


class Tag(Base):
    """A tag taught by example, and the classifier last fitted for it (search.tags)."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    version: Mapped[int] = mapped_column(Integer)  # raised when examples or prompts change
    prompts: Mapped[str] = mapped_column(Text)  # a JSON list of texts
    model: Mapped[str | None] = mapped_column(String(512))
    weights: Mapped[bytes | None] = mapped_column(LargeBinary)
    bias: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    applied_upto: Mapped[int] = mapped_column(Integer)  # newest embedding id scored
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def prompt_list(self) -> list[str]:
        return json.loads(self.prompts)


class TagExample(Base):
    __tablename__ = "tag_examples"

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"),
                                        primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"),
                                            primary_key=True)
    positive: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TagMember(Base):
    __tablename__ = "tag_members"
    __table_args__ = (Index("ix_tag_members_content", "content_id", "tag_id"),)

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"),
                                        primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"),
                                            primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer)  # the tag version that scored it


def tag_conditions(where: Filter) -> list:
    """The filter's tag clauses on ``Content.id``: has every tag, has none of the others."""
    def has(name: str):
        return exists().where(TagMember.content_id == Content.id,
                              TagMember.tag_id == select(Tag.id).where(Tag.name == name)
                              .scalar_subquery())
    return [has(n) for n in where.tags] + [~has(n) for n in where.not_tags]
