"""Initial schema: contents, files, embeddings.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("format", sa.String(16)),
        sa.Column("taken_at", sa.DateTime),
        sa.Column("camera", sa.String(128)),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column(
            "content_id", sa.Integer, sa.ForeignKey("contents.id", ondelete="SET NULL")
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_files_content_id", "files", ["content_id"])
    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "content_id",
            sa.Integer,
            sa.ForeignKey("contents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("content_id", "model", name="uq_embedding_content_model"),
        # AUTOINCREMENT: SQLite never reuses an id, so ids only grow (search.vectors).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_embeddings_content_id", "embeddings", ["content_id"])
    op.create_index("ix_embeddings_model", "embeddings", ["model"])


def downgrade() -> None:
    op.drop_table("embeddings")
    op.drop_table("files")
    op.drop_table("contents")
