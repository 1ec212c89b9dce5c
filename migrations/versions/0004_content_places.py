"""Where each content was taken: EXIF GPS position and its names, read after the CLIP pass.

One row per content the place stage has looked at, tagged with the geocoder data that named
it (``source``); a photo without GPS tags has a row with no position, so it is not read
again. ``place_key`` holds every name, normalised (lower case, no accents) between bars, for
``--place``; ``latitude``/``longitude`` are indexed for ``--near``'s bounding box.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_places",
        sa.Column("content_id", sa.Integer,
                  sa.ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("latitude", sa.Float),
        sa.Column("longitude", sa.Float),
        sa.Column("altitude", sa.Float),
        sa.Column("city", sa.String(128)),
        sa.Column("area", sa.String(128)),
        sa.Column("region", sa.String(128)),
        sa.Column("country", sa.String(128)),
        sa.Column("country_code", sa.String(8)),
        sa.Column("place_key", sa.Text),
    )
    op.create_index("ix_content_places_position", "content_places", ["latitude", "longitude"])


def downgrade() -> None:
    op.drop_index("ix_content_places_position", "content_places")
    op.drop_table("content_places")
