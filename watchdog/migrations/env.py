"""Alembic environment: runs the package's migrations on the connection the store hands in."""

from __future__ import annotations

from alembic import context

from watchdog.store.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the store always hands a connection in
    raise RuntimeError("run migrations through watchdog.store.Store, which provides the connection")
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
