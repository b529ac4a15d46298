"""The consent filter on the embedded default (SQLite): a withdrawal is honoured by the next call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from consent.decisions import pseudonyms
from dp_queries import consenting as module
from dp_queries.consenting import consenting
from enclave.components import Components, build_components
from enclave.datasets.frames import FrameCache
from enclave.datasets.ingestion import ingest
from infra.db import make_engine
from infra.migrate import upgrade
from infra.settings import Settings, load_settings
from tests.enclave.conftest import world as enclave_world  # noqa: F401 - the enclave's fixture
from tests.enclave.test_erasure import old_enough, withdraw

DATASET = "questionnaire-wave1"

# The enclave fixture builds on ``db_session`` and ``components``: here on an SQLite file.


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'enclave.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, sqlite_engine: Engine) -> Settings:
    return load_settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=str(sqlite_engine.url),
        log_json=True,
        log_level="WARNING",
    )


@pytest.fixture
def components(settings: Settings, sqlite_engine: Engine) -> Components:
    return build_components(settings, engine=sqlite_engine)


@pytest.fixture
def session_factory(components: Components) -> sessionmaker[Session]:
    return components.session_factory


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


def test_a_withdrawal_is_honoured_at_once_on_sqlite(db_session, enclave_world):  # noqa: F811
    world = enclave_world
    ingest(
        db_session,
        world["steward"],
        world["store"],
        world["protector"],
        dataset_id=DATASET,
        data=world["upload"].write_csv().encode(),
    )
    db_session.commit()
    module.forget()
    loaded = FrameCache(max_bytes=2**26).get(db_session, world["store"], DATASET)
    first = consenting(db_session, loaded)
    assert first.excluded == 0
    derived = module.counters.derivations
    assert consenting(db_session, loaded).digest == first.digest
    assert module.counters.derivations == derived, "answered from what was kept"
    subject = old_enough(db_session, world)
    pseudonym = pseudonyms.pseudonymise(db_session, world["store"].keys, "letscare-main", [subject])[subject]
    withdraw(db_session, world, subject, ["questionnaires"])
    db_session.commit()
    after = consenting(db_session, loaded)
    assert after.excluded == 1
    assert pseudonym not in after.frame["pseudonym"].to_list()
    assert after.digest != first.digest
