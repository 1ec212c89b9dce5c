"""A log of removed embeddings, so a vector index drops them without a rebuild.

Embedding ids only grow, so "the highest id a vector index holds" tells it what was added
since. Removals need their own ever-growing sequence: each deleted embedding leaves a row
here (written by ``Store.collect_orphans`` in the same transaction as the delete).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embedding_removals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("content_id", sa.Integer, nullable=False),
        sa.Column("embedding_id", sa.Integer, nullable=False),
        sa.Column("removed_at", sa.DateTime, nullable=False),
        # AUTOINCREMENT: ids never reused, so "the last removal an index applied" is exact.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_embedding_removals_model_id", "embedding_removals", ["model", "id"])
    # "The newest vector of a model" is then one index seek, not a scan of a million rows.
    op.create_index("ix_embeddings_model_id", "embeddings", ["model", "id"])


def downgrade() -> None:
    op.drop_index("ix_embeddings_model_id", "embeddings")
    op.drop_table("embedding_removals")
