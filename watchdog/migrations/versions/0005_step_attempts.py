"""Steps keep their retry state in columns: ``attempts`` (failed attempts so far) and
``next_attempt_at`` (not before then), so a backoff survives a restart and a failover.

Before 0005 ``attempts`` counted dispatches and the failed attempts were a ``retryable_errors`` key
in the step's evidence; the upgrade moves that count into the column (the dispatch count is in
the dispatch step's own state, ``dispatches``).

Revision ID: 0005
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.Float(), nullable=True))
    conn = op.get_bind()
    steps = sa.table(
        "steps",
        sa.column("id", sa.Integer),
        sa.column("attempts", sa.Integer),
        sa.column("evidence", sa.JSON),
    )
    for row_id, evidence in conn.execute(sa.select(steps.c.id, steps.c.evidence)).all():
        data = json.loads(evidence) if isinstance(evidence, str) else (evidence or {})
        failed = int(data.get("retryable_errors", 0)) if isinstance(data, dict) else 0
        conn.execute(steps.update().where(steps.c.id == row_id).values(attempts=failed))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("next_attempt_at")
