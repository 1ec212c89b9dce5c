"""Text read from photos (OCR), one row per content, with a full-text index.

A row records which engine read it (``engine``: the OCR package, its version and models),
so a better engine re-reads without re-encoding, and a rename costs nothing (the key is the
content). ``status`` is ``ok`` (``text`` may be empty: no text found) or ``failed`` (with the
reason in ``error``; retried only when the engine changes).

SQLite: an FTS5 table over ``text`` (external content, kept in step by triggers).
PostgreSQL: a GIN index over ``to_tsvector('simple', text)``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_texts",
        sa.Column("content_id", sa.Integer,
                  sa.ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("engine", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE content_texts_fts USING fts5(text, content='content_texts', "
            "content_rowid='content_id', tokenize='unicode61 remove_diacritics 2')"
        )
        op.execute(
            "CREATE TRIGGER content_texts_ai AFTER INSERT ON content_texts BEGIN "
            "INSERT INTO content_texts_fts(rowid, text) VALUES (new.content_id, new.text); END"
        )
        op.execute(
            "CREATE TRIGGER content_texts_ad AFTER DELETE ON content_texts BEGIN "
            "INSERT INTO content_texts_fts(content_texts_fts, rowid, text) "
            "VALUES ('delete', old.content_id, old.text); END"
        )
        op.execute(
            "CREATE TRIGGER content_texts_au AFTER UPDATE ON content_texts BEGIN "
            "INSERT INTO content_texts_fts(content_texts_fts, rowid, text) "
            "VALUES ('delete', old.content_id, old.text); "
            "INSERT INTO content_texts_fts(rowid, text) VALUES (new.content_id, new.text); END"
        )
    else:
        op.execute(
            "CREATE INDEX ix_content_texts_tsv ON content_texts "
            "USING gin (to_tsvector('simple', text))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("content_texts_ai", "content_texts_ad", "content_texts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS content_texts_fts")
    op.drop_table("content_texts")
