"""The schema is built and removed by the Alembic migrations, and they match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from enclave.components import import_wiring
from infra.db import Base, make_engine
from infra.migrate import current_revision, downgrade, head_revision, upgrade
from tests.conftest import recreate_database


def test_migrations_round_trip_on_postgresql():
    engine = make_engine(recreate_database("enclave_test_migrations"))
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision(engine)
        tables = set(inspect(engine).get_table_names())
        assert "job_outbox" in tables

        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        upgrade(engine)
        assert current_revision(engine) == head_revision(engine)
        assert set(inspect(engine).get_table_names()) == tables
    finally:
        engine.dispose()


def test_models_and_migrations_agree(pg_engine):
    import_wiring()
    with pg_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models differ from the migrations; write a migration for: {diff}"


def test_migrations_run_on_sqlite(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'enclave.db'}")
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    engine.dispose()
