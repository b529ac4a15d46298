"""The embedded default (SQLite) keeps budgets too: its single writer serialises concurrent releases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from access.audit.sealer import sealer_for
from dp_queries.budget import BudgetExhausted
from enclave.components import build_components
from enclave.objects.store import EncryptedStore
from infra.db import make_engine, make_session_factory, session_scope
from infra.migrate import upgrade
from infra.settings import load_settings
from infra.tasks import configure_celery
from tests.dp.conftest import DpWorld, _build, make_project, make_researcher, mean_spec
from tests.dp.test_budget import WAIT, release, releases, spent


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DpWorld]:
    data_dir: Path = tmp_path_factory.mktemp("dp-sqlite")
    url = f"sqlite:///{data_dir / 'enclave.db'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = load_settings(
        environment="test", data_dir=data_dir, database_url=url, log_json=True, log_level="WARNING"
    )
    components = build_components(settings, engine=engine)
    store = EncryptedStore(None, components.keys, components.storage)
    with session_scope(make_session_factory(engine)) as session:
        built = _build(session, components, store)
    try:
        yield DpWorld(engine=engine, settings=settings, components=components, store=store, **built)
    finally:
        sealer_for(engine).flush()
        engine.dispose()


def test_twenty_concurrent_releases_of_a_tenth_against_a_budget_of_one_on_sqlite(sqlite_world):
    world = sqlite_world
    configure_celery(world.settings, engine=world.engine)
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    release(world, owner, project_id, mean_spec(upper=4.999, epsilon="0.0001"))  # warms the caches
    project_id = make_project(world, owner, epsilon="1.0")
    start = threading.Barrier(20, timeout=WAIT)
    outcomes: list[str] = []
    problems: list[BaseException] = []
    lock = threading.Lock()

    def one(number: int) -> None:
        try:
            start.wait()
            release(world, owner, project_id, mean_spec(upper=5.0 - number / 100))
            outcome = "released"
        except BudgetExhausted as error:
            outcome = error.code
        except BaseException as error:
            with lock:
                problems.append(error)
            return
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not problems, problems
    assert outcomes.count("released") == 10
    assert outcomes.count("budget_exhausted") == 10
    assert spent(world, project_id) == Decimal("1.0000")
    assert releases(world, project_id) == 10
