"""One deploy event per deploy: (env, service, tag, run id) is unique, a missing run id counting as one.

The CLI, the API and the GitHub deployments poller may each announce the same deploy; the database
keeps the first and the others get it back (``INSERT … ON CONFLICT DO NOTHING``). A NULL run id is
indexed as -1 (GitHub's run ids are positive), so two announcements without one match as well. An
upgrade first deletes the duplicates already stored, keeping the oldest of each deploy: a later one
would only have started a second watch of the same release.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEX = "uq_deploy_event"
#: The run id as the index holds it; ``Store.add_deploy_event`` names the same expression.
RUN_KEY = "COALESCE(run_id, -1)"


def upgrade() -> None:
    op.execute(
        "DELETE FROM deploy_events WHERE id NOT IN ("
        f"SELECT MIN(id) FROM deploy_events GROUP BY env, service, tag, {RUN_KEY})"
    )
    op.create_index(INDEX, "deploy_events", ["env", "service", "tag", sa.text(RUN_KEY)], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="deploy_events")
