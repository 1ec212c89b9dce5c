"""Tags taught by example: the tag, its examples, and the photos it applies to.

``tags`` holds a tag's text prompts, its version (raised whenever its examples or prompts
change), and the classifier last fitted for one model: weights, bias, threshold, and the
newest embedding id it was applied to, so new photos are scored without a pass over the
library. ``tag_examples`` are the photos a person confirmed (positive) or rejected.
``tag_members`` are the photos the classifier accepts, with the tag version that scored them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("prompts", sa.Text, nullable=False),
        sa.Column("model", sa.String(512)),
        sa.Column("weights", sa.LargeBinary),
        sa.Column("bias", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("applied_upto", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "tag_examples",
        sa.Column("tag_id", sa.Integer, sa.ForeignKey("tags.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("content_id", sa.Integer, sa.ForeignKey("contents.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("positive", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "tag_members",
        sa.Column("tag_id", sa.Integer, sa.ForeignKey("tags.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("content_id", sa.Integer, sa.ForeignKey("contents.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    # "which tags does this photo have": the search filter's probe.
    op.create_index("ix_tag_members_content", "tag_members", ["content_id", "tag_id"])


def downgrade() -> None:
    op.drop_index("ix_tag_members_content", "tag_members")
    op.drop_table("tag_members")
    op.drop_table("tag_examples")
    op.drop_table("tags")
