"""Shared fixtures: a PostgreSQL database built by the migrations, one rolled-back transaction per
test, settings for the real services on this machine, and an HTTP client on the app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from enclave.app import create_app
from enclave.components import Components, build_components
from infra.db import make_engine
from infra.migrate import upgrade
from infra.settings import Settings, load_settings

pytest_plugins = [
    "tests.support.celery_worker",
    "tests.support.openbao",
    "tests.support.seaweedfs",
    "tests.support.auth",
    "tests.support.smtp",
]

PG_SERVER = os.environ.get("ENCLAVE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
# Each test run gets its own databases and Redis database, so two runs on one machine (a developer's
# and CI's, say) never drop each other's data.
RUN_ID = os.getpid()
REDIS_URL = os.environ.get("ENCLAVE_TEST_REDIS", f"redis://127.0.0.1:6379/{1 + RUN_ID % 15}")
_CREATED: list[str] = []


def _admin_conninfo() -> str:
    url = make_url(f"{PG_SERVER}/postgres")
    return f"host={url.host} port={url.port or 5432} user={url.username} dbname=postgres"


def recreate_database(name: str) -> str:
    """Drop and create a PostgreSQL database for this run; return its SQLAlchemy URL."""
    name = f"{name}_{RUN_ID}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    _CREATED.append(name)
    return f"{PG_SERVER}/{name}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the databases this run created."""
    if not _CREATED:
        return
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        for name in _CREATED:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a fresh test database whose schema was built by running the migrations."""
    url = recreate_database("enclave_test")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """Engine on the migrated test database."""
    engine = make_engine(pg_url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture
def db_connection(pg_engine: Engine) -> Iterator[Connection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    connection = pg_engine.connect()
    transaction = connection.begin()
    try:
        yield connection
    finally:
        transaction.rollback()
        connection.close()


@pytest.fixture
def session_factory(db_connection: Connection) -> sessionmaker[Session]:
    """Sessions whose commits become savepoints of the test's transaction."""
    return sessionmaker(bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for the test body, rolled back with the test."""
    with session_factory() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    """Settings for the real PostgreSQL, tasks in-process, local storage and keys in a temp folder."""
    return load_settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=pg_url,
        log_json=True,
        log_level="WARNING",
    )


@pytest.fixture
def components(settings: Settings, pg_engine: Engine, session_factory: sessionmaker[Session]) -> Components:
    """Process components whose sessions join the test's rolled-back transaction."""
    built = build_components(settings, engine=pg_engine)
    built.session_factory = session_factory
    return built


@pytest.fixture
def client(settings: Settings, components: Components) -> Iterator[TestClient]:
    """HTTP client on the app."""
    app = create_app(settings, components)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
