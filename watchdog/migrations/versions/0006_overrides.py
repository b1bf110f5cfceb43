"""Human overrides: pauses of automation (with an expiry), and vetoed incidents counted as closed.

A vetoed incident (phase ``vetoed``) is over: the index that allows one open incident per
environment and service no longer counts it.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OPEN = "phase NOT IN ('resolved', 'escalated', 'vetoed')"
OPEN_BEFORE = "phase NOT IN ('resolved', 'escalated')"


def upgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("env", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=128), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("ended_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pauses_env", "pauses", ["env", "ended_at"])
    _open_index(OPEN)


def downgrade() -> None:
    _open_index(OPEN_BEFORE)
    op.drop_index("ix_pauses_env", table_name="pauses")
    op.drop_table("pauses")


def _open_index(where: str) -> None:
    op.drop_index("uq_open_incident", table_name="incidents")
    op.create_index(
        "uq_open_incident",
        "incidents",
        ["env", "service"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )
