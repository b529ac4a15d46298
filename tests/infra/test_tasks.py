"""Tasks run on a real Celery worker through Redis or in-process; jobs leave only after commit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.result import AsyncResult
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from infra.db import make_engine, make_session_factory, session_scope
from infra.outbox import OutboxJob, enqueue, install_session_hooks, outbox_flush, utcnow
from infra.settings import load_settings
from infra.tasks import PERIODIC_JOBS, InProcessScheduler, celery_app, configure_celery, ping


def test_task_runs_in_process_without_a_broker(settings):
    configure_celery(settings)
    result = ping.apply_async().get(timeout=5)
    assert result["pong"] is True
    assert result["in_process"] is True


def test_task_runs_on_a_real_worker_through_redis(celery_worker):
    configure_celery(celery_worker.settings)
    result = ping.apply_async().get(timeout=30)
    assert result["pong"] is True
    assert result["in_process"] is False


def test_tasks_are_routed_to_the_queue_named_by_their_prefix(celery_worker):
    configure_celery(celery_worker.settings)
    route = celery_app.amqp.router.route({}, "ingest.dataset")
    assert route["queue"].name == "ingest"
    assert celery_app.amqp.router.route({}, "default.ping")["queue"].name == "default"


@pytest.fixture
def worker_sessions(celery_worker):
    configure_celery(celery_worker.settings)
    install_session_hooks()
    engine = make_engine(celery_worker.settings.effective_database_url)
    yield make_session_factory(engine)
    with session_scope(make_session_factory(engine)) as session:
        session.execute(OutboxJob.__table__.delete())
    engine.dispose()


def test_job_is_sent_only_after_the_transaction_commits(worker_sessions):
    with session_scope(worker_sessions) as session:
        job = enqueue(session, "default.ping")
        assert not AsyncResult(job.id, app=celery_app).ready()
    stored = worker_sessions().get(OutboxJob, job.id)
    assert stored is not None
    assert stored.sent_at is not None
    assert AsyncResult(job.id, app=celery_app).get(timeout=30)["pong"] is True


def test_job_of_a_rolled_back_transaction_is_never_sent(worker_sessions):
    job_ids: list[str] = []

    def failing_request() -> None:
        with session_scope(worker_sessions) as session:
            job_ids.append(enqueue(session, "default.ping").id)
            raise RuntimeError("request failed")

    with pytest.raises(RuntimeError):
        failing_request()
    job_id = job_ids[0]
    assert worker_sessions().get(OutboxJob, job_id) is None
    assert AsyncResult(job_id, app=celery_app).state == "PENDING"


def test_job_committed_while_the_broker_was_down_is_sent_by_the_flush_job(worker_sessions, celery_worker):
    down = load_settings(
        environment="test",
        data_dir=celery_worker.settings.data_dir,
        database_url=celery_worker.settings.effective_database_url,
        broker_url="redis://127.0.0.1:1/0",
    )
    configure_celery(down)
    celery_app.conf.broker_transport_options = {"max_retries": 0}
    celery_app.conf.task_publish_retry = False
    try:
        with session_scope(worker_sessions) as session:
            job = enqueue(session, "default.ping")
    finally:
        configure_celery(celery_worker.settings)
    stored = worker_sessions().get(OutboxJob, job.id)
    assert stored is not None
    assert stored.sent_at is None
    assert stored.last_error

    with session_scope(worker_sessions) as session:
        session.execute(
            update(OutboxJob).where(OutboxJob.id == job.id).values(created_at=utcnow() - timedelta(minutes=5))
        )
    # The flush job runs on the worker, reading the outbox with its own database session.
    assert outbox_flush.apply_async().get(timeout=30) == 1
    assert AsyncResult(job.id, app=celery_app).get(timeout=30)["pong"] is True
    with Session(worker_sessions.kw["bind"]) as session:
        assert session.scalar(select(OutboxJob.sent_at).where(OutboxJob.id == job.id)) is not None


def test_unknown_task_name_is_refused_before_anything_is_stored(db_session):
    with pytest.raises(KeyError):
        enqueue(db_session, "default.no_such_task")


def test_in_process_scheduler_runs_due_periodic_jobs(settings):
    configure_celery(settings)
    scheduler = InProcessScheduler()
    scheduler._last_run = dict.fromkeys(PERIODIC_JOBS, 0.0)
    assert "outbox-flush" in PERIODIC_JOBS
    # An hour later every job whose interval is an hour or less is due.
    assert "outbox-flush" in scheduler.run_due(3600.0)
    assert "outbox-flush" in celery_app.conf.beat_schedule
