"""Alembic environment: runs the migrations on the connection or URL handed in by infra.migrate."""

from __future__ import annotations

import importlib

from alembic import context
from sqlalchemy import Connection

from infra.db import Base, make_engine

config = context.config

# The composition root names the model modules so autogenerate sees every table without this
# plumbing package importing the domain packages.
for module in config.attributes.get("model_modules") or []:
    importlib.import_module(module)

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the connection given by the caller, or on a fresh engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
