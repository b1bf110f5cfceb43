"""Releases and deploy events carry the release's migration manifest when the deploy event had one.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("migrations", sa.JSON(), nullable=True))
    with op.batch_alter_table("deploy_events") as batch:
        batch.add_column(sa.Column("migrations", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploy_events") as batch:
        batch.drop_column("migrations")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("migrations")
