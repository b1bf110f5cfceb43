"""Signal points: every signal of every watch at every tick (the dashboard's and the evidence
picture's paths).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signal_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("watch_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("signal", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("canary", sa.Float(), nullable=True),
        sa.Column("baseline", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_signal_points_watch", "signal_points", ["watch_id", "signal", "at"])


def downgrade() -> None:
    op.drop_index("ix_signal_points_watch", table_name="signal_points")
    op.drop_table("signal_points")
