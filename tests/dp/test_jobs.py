"""Large queries run as jobs: 202 and polling; a crash inside the release spends nothing and is retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from access.audit.actions import Role
from access.principal import Principal
from dp_queries import engine, service, tasks
from dp_queries.models import JobStatus, QueryJob
from dp_queries.spec import QuerySpec
from enclave.app import create_app
from infra.db import session_scope
from infra.settings import load_settings
from tests.dp.conftest import count_spec, headers, make_project, make_researcher, mean_spec
from tests.dp.test_budget import releases, spent


class Crash(RuntimeError):
    """Stands for a worker dying in the middle of the measurement."""


@pytest.fixture
def crash_once(monkeypatch):
    """The next OpenDP measurement fails once, inside the release transaction (project locked)."""
    real = engine.release
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash("worker lost mid-release")
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "release", failing)
    return calls


@pytest.fixture
def job_client(world):
    """An app on which every query runs as a job (row threshold 0); tasks run in-process."""
    settings = load_settings(
        environment="test",
        data_dir=world.settings.data_dir,
        database_url=world.settings.effective_database_url,
        log_json=True,
        log_level="WARNING",
        dp_async_row_threshold=0,
    )
    with TestClient(create_app(settings, world.components), raise_server_exceptions=False) as client:
        yield client


def queue(world, user, project_id, spec) -> str:
    """Queue a job as the API does: it is sent (and, in-process, run) once committed."""
    researcher = Principal(account_id=user.account_id, roles=frozenset({Role.researcher}))
    with session_scope(world.sessions) as session:
        prepared = service.prepare(session, user.account_id, project_id, QuerySpec.model_validate(spec))
        return service.queue_job(session, researcher, prepared).id


def stored_job(world, user, project_id, spec, *, status=JobStatus.queued, age=timedelta(0)) -> str:
    """A job row that no worker was sent yet (as after a lost message or a dead worker)."""
    with session_scope(world.sessions) as session:
        prepared = service.prepare(session, user.account_id, project_id, QuerySpec.model_validate(spec))
        row = QueryJob(
            project_id=project_id,
            account_id=user.account_id,
            dataset_id=prepared.dataset_id,
            spec=prepared.spec.model_dump(mode="json"),
            spec_hash=prepared.spec_hash,
            status=status.value,
            attempts=0 if status is JobStatus.queued else 1,
            updated_at=datetime.now(UTC) - age,
        )
        session.add(row)
        session.flush()
        return row.id


def job(world, job_id) -> QueryJob:
    with world.sessions() as session:
        found = session.get(QueryJob, job_id)
        assert found is not None
        return found


def test_a_large_query_answers_202_with_a_job_that_finishes_with_its_release(world, job_client):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    answer = job_client.post(
        "/api/dp/queries",
        json={"project_id": project_id, "spec": count_spec()},
        headers=headers(job_client, owner),
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    polled = job_client.get(f"/api/dp/jobs/{job_id}", headers=headers(job_client, owner))
    assert polled.status_code == 200
    body = polled.json()
    assert body["status"] == "done"
    assert body["release"]["epsilon"] == "0.1000"
    assert [r["gender"] for r in body["release"]["result"]["rows"]] == ["female", "male", "other"]
    assert spent(world, project_id) == Decimal("0.1000")
    stranger = make_researcher(world)
    assert job_client.get(f"/api/dp/jobs/{job_id}", headers=headers(job_client, stranger)).status_code == 404


def test_a_job_refused_for_lack_of_budget_fails_with_the_reason(world, job_client):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="0.1")
    first = stored_job(world, owner, project_id, mean_spec(upper=4.9))
    second = stored_job(world, owner, project_id, mean_spec(upper=4.8))
    tasks.run_job(first, world.store)
    assert tasks.run_job(second, world.store) == "failed"
    failed = job(world, second)
    assert failed.status == JobStatus.failed.value
    assert failed.error is not None
    assert failed.error["reason"] == "budget_exhausted"
    assert failed.error["remaining_epsilon"] == "0.0000"
    assert spent(world, project_id) == Decimal("0.1000")


def test_a_crash_during_the_release_spends_nothing_and_the_retry_succeeds(world, crash_once):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    job_id = stored_job(world, owner, project_id, mean_spec(upper=4.4))
    with pytest.raises(Crash):
        tasks.run_job(job_id, world.store)
    crashed = job(world, job_id)
    assert crashed.status == JobStatus.queued.value, "left retryable"
    assert crashed.attempts == 1
    assert crashed.last_error == "Crash"
    assert spent(world, project_id) == Decimal(0), "the spend was rolled back with the release"
    assert releases(world, project_id) == 0

    assert tasks.run_job(job_id, world.store) == "done"
    done = job(world, job_id)
    assert done.attempts == 2
    assert done.release_id is not None
    assert spent(world, project_id) == Decimal("0.1000")
    assert releases(world, project_id) == 1
    # Sending the finished job again (a redelivery) spends nothing more.
    assert tasks.run_job(job_id, world.store) == "done"
    assert spent(world, project_id) == Decimal("0.1000")


def test_the_celery_task_retries_after_a_crash_and_spends_once(world, crash_once):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    job_id = queue(world, owner, project_id, mean_spec(upper=4.3))  # sent in-process once committed
    assert crash_once["n"] == 2, "the first run crashed, the retry ran the measurement"
    finished = job(world, job_id)
    assert finished.status == JobStatus.done.value
    assert finished.attempts == 2
    assert spent(world, project_id) == Decimal("0.1000")


def test_a_job_whose_worker_died_is_sent_again_by_the_sweep(world):
    owner = make_researcher(world)
    project_id = make_project(world, owner, epsilon="1.0")
    job_id = stored_job(
        world, owner, project_id, count_spec(), status=JobStatus.running, age=timedelta(hours=1)
    )
    recent = stored_job(world, owner, project_id, count_spec(group_by=["stage"]), status=JobStatus.running)
    assert tasks.requeue_stale() >= 1
    swept = job(world, job_id)
    assert swept.status == JobStatus.done.value
    assert swept.attempts == 2
    assert job(world, recent).status == JobStatus.running.value, "a job still running is left alone"
    assert spent(world, project_id) == Decimal("0.1000")
