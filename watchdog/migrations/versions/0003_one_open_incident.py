"""At most one open incident per environment and service, enforced by a partial unique index.

Before, checking for an open incident and opening one were two transactions, so concurrent callers
could open several. An upgrade closes such duplicates first: every open incident but the oldest of
its service is marked escalated, the state that hands a rollback to a human, and its steps stay
as they were for that human to read.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = "phase NOT IN ('resolved', 'escalated')"


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text(f"SELECT id, env, service FROM incidents WHERE {OPEN} ORDER BY id")).all()
    seen: set[tuple[str, str]] = set()
    for incident_id, env, service in rows:
        if (env, service) in seen:
            conn.execute(
                sa.text("UPDATE incidents SET phase = 'escalated' WHERE id = :id"),
                {"id": incident_id},
            )
        seen.add((env, service))
    op.create_index(
        "uq_open_incident",
        "incidents",
        ["env", "service"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_open_incident", table_name="incidents")
