"""Tests whose data must really commit: another connection or process reads it.

These fixtures override the rolled-back ``db_session`` family of ``tests/conftest.py`` for this
folder: the enclave fixtures (``world``) build on a migrated PostgreSQL database of each module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from enclave.components import Components, build_components
from infra.db import make_engine
from infra.migrate import upgrade
from infra.settings import Settings, load_settings
from tests.conftest import recreate_database


@dataclass
class CommittedDatabase:
    url: str
    engine: Engine


@pytest.fixture
def committed(request: pytest.FixtureRequest) -> Iterator[CommittedDatabase]:
    url = recreate_database(f"enclave_test_{request.module.__name__.rsplit('.', 1)[-1]}")
    engine = make_engine(url)
    upgrade(engine)
    yield CommittedDatabase(url, engine)
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, committed: CommittedDatabase) -> Settings:
    return load_settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=committed.url,
        log_json=True,
        log_level="WARNING",
    )


@pytest.fixture
def components(settings: Settings, committed: CommittedDatabase) -> Components:
    return build_components(settings, engine=committed.engine)


@pytest.fixture
def session_factory(components: Components) -> sessionmaker[Session]:
    return components.session_factory


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session
