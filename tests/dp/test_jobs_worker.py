"""A real Celery worker killed in the middle of a DP release: nothing is spent, and the job runs again.

The worker (``enclave worker --pool=solo``, so the task runs in the process that is killed) serves
the committed DP world through its own Redis database. The test holds the project's row lock, so
the worker's release transaction is caught waiting inside the transaction when it is killed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, text

from access.projects.models import ResearchProject
from dp_queries import tasks
from dp_queries.models import JobStatus
from infra.settings import Settings, load_settings
from infra.tasks import configure_celery, ping
from tests.conftest import REDIS_URL
from tests.dp.conftest import DpWorld, count_spec, make_project, make_researcher
from tests.dp.test_budget import releases, spent
from tests.dp.test_jobs import job, queue
from tests.support.celery_worker import start_worker
from tests.support.processes import stop

WAIT = 90.0
_DB = int(REDIS_URL.rsplit("/", 1)[1])
DP_REDIS = f"{REDIS_URL.rsplit('/', 1)[0]}/{_DB % 15 + 1}"
"""A Redis database of its own, so the suite's other worker never takes these jobs."""


@pytest.fixture
def broker_settings(world: DpWorld) -> Iterator[Settings]:
    settings = load_settings(
        environment="test",
        data_dir=world.settings.data_dir,
        database_url=world.settings.effective_database_url,
        broker_url=DP_REDIS,
        log_level="WARNING",
    )
    redis.Redis.from_url(DP_REDIS).flushdb()
    configure_celery(settings, engine=world.engine)
    try:
        yield settings
    finally:
        configure_celery(world.settings, engine=world.engine)


def _until(condition, what: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} did not happen within {WAIT} s:\n{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.2)


def _answers_ping() -> bool:
    try:
        ping.apply_async().get(timeout=3)
    except Exception:
        return False
    return True


def test_a_worker_killed_mid_release_spends_nothing_and_the_job_is_sent_again(
    world, broker_settings, tmp_path
):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    log = tmp_path / "worker.log"
    worker = start_worker(broker_settings, log, ["--pool=solo"])
    second = None
    blocker = world.engine.connect()
    try:
        _until(_answers_ping, "the worker answering", log)
        holding = blocker.begin()
        # The same lock a release takes: the worker's release waits for it, inside its transaction.
        blocker.execute(
            select(ResearchProject.id).where(ResearchProject.id == project_id).with_for_update(key_share=True)
        )
        job_id = queue(world, owner, project_id, count_spec())

        def waiting_for_the_lock() -> bool:
            with world.engine.connect() as probe:
                waiting = probe.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            return job(world, job_id).status == JobStatus.running.value and waiting > 0

        _until(waiting_for_the_lock, "the worker waiting inside its release transaction", log)
        worker.kill()
        worker.wait(timeout=30)
        holding.rollback()

        crashed = job(world, job_id)
        assert crashed.status == JobStatus.running.value
        assert crashed.attempts == 1
        assert spent(world, project_id) == Decimal(0)
        assert releases(world, project_id) == 0

        second = start_worker(broker_settings, log, ["--pool=solo"])
        _until(_answers_ping, "the second worker answering", log)
        assert tasks.requeue_stale(older_than=timedelta(0)) >= 1
        _until(lambda: job(world, job_id).status == JobStatus.done.value, "the job finishing", log)
        finished = job(world, job_id)
        assert finished.attempts == 2
        assert spent(world, project_id) == Decimal("0.1000")
        assert releases(world, project_id) == 1
    finally:
        blocker.close()
        for process in (worker, second):
            if process is not None and process.poll() is None:
                stop(process)
