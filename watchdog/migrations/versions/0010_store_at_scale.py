"""The store at scale: an index for every read path of the tick, the API, the dashboard and the
CLI, and the retention's marks on watches (when an ended watch's signal points and verdicts were
deleted; the decision log is never pruned).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: (name, table, columns): what each serves is in ``watchdog/store/models.py``.
INDEXES = [
    ("ix_deploy_events_pending", "deploy_events", ["consumed_at"]),
    ("ix_watches_service", "watches", ["env", "service", "kind", "id"]),
    ("ix_watches_incident", "watches", ["incident_id", "kind"]),
    ("ix_watches_points_kept", "watches", ["points_pruned_at", "ended_at"]),
    ("ix_watches_verdicts_kept", "watches", ["verdicts_pruned_at", "ended_at"]),
    ("ix_incidents_env_created", "incidents", ["env", "created_at"]),
    ("ix_steps_incident", "steps", ["incident_id"]),
    ("ix_decision_log_env_id", "decision_log", ["env", "id"]),
    ("ix_decision_log_service", "decision_log", ["env", "service", "id"]),
    ("ix_decision_log_kind", "decision_log", ["env", "kind", "id"]),
    ("ix_decision_log_watch", "decision_log", ["watch_id", "kind"]),
    ("ix_decision_log_incident", "decision_log", ["incident_id"]),
    ("ix_pauses_open", "pauses", ["ended_at", "until"]),
    ("ix_notices_by_subject", "notices", ["subject", "notifier"]),
]


#: The notices not delivered yet (``watchdog.store.models.UNDELIVERED_NOTICE``).
UNDELIVERED = "phase IN ('pending', 'sending')"


def upgrade() -> None:
    op.add_column("watches", sa.Column("points_pruned_at", sa.Float(), nullable=True))
    op.add_column("watches", sa.Column("verdicts_pruned_at", sa.Float(), nullable=True))
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    op.create_index(
        "ix_notices_undelivered",
        "notices",
        ["id"],
        sqlite_where=sa.text(UNDELIVERED),
        postgresql_where=sa.text(UNDELIVERED),
    )


def downgrade() -> None:
    op.drop_index("ix_notices_undelivered", table_name="notices")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+), not a batch's copy: the copy would drop the
    # table that verdicts and the decision log refer to
    op.drop_column("watches", "verdicts_pruned_at")
    op.drop_column("watches", "points_pruned_at")
