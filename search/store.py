"""The metadata store: the one source of truth (DESIGN invariant 1).

Three tables. ``contents`` is one row per distinct image content (blake2b of the bytes), so a
renamed, moved or duplicated file points at the content it already had (invariant 3).
``files`` is one row per path with the size and mtime that were read, its status and, for a
bad file, the reason. ``embeddings`` holds one vector per (content, model) (invariant 2).
The schema is created and upgraded only by Alembic (``migrations/``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from search.errors import PixseekError

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
    __table_args__ = (UniqueConstraint("content_id", "model", name="uq_embedding_content_model"),)

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


def vector_to_blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def blob_to_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        cur = dbapi_conn.cursor()
        # WAL: the web UI reads while the indexer writes. NORMAL is crash-safe under WAL
        # (a power cut may lose the last commits, never corrupt the file).
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


class Store:
    """A database handle: ``with store.session() as s: ...`` commits or rolls back."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if upgrade:
            self.upgrade()

    def upgrade(self) -> None:
        from search.migrate import upgrade_to_head

        try:
            upgrade_to_head(self.engine)
        except OperationalError as exc:
            raise PixseekError(
                f"cannot open the database {self.engine.url!r}: {exc.orig}. "
                "Check database_url and that the data directory is writable."
            ) from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- queries shared by the indexer, the engine and the CLI ---------------------------

    def embedding_state(self, model: str) -> tuple[int, int]:
        """(highest embedding id, count) for a model: what a vector index must reflect."""
        with self.session() as s:
            row = s.execute(
                select(func.coalesce(func.max(Embedding.id), 0), func.count(Embedding.id)).where(
                    Embedding.model == model
                )
            ).one()
        return int(row[0]), int(row[1])

    def iter_embeddings(
        self, model: str, after_id: int = 0, chunk: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """Stream (content ids, vectors, last embedding id) in id order, chunk by chunk."""
        last = after_id
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(Embedding.id, Embedding.content_id, Embedding.vector)
                    .where(Embedding.model == model, Embedding.id > last)
                    .order_by(Embedding.id)
                    .limit(chunk)
                ).all()
            if not rows:
                return
            last = rows[-1][0]
            ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.stack([blob_to_vector(r[2]) for r in rows])
            yield ids, vecs, last

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
