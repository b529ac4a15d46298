"""The Celery application, its queues, the database task base and the periodic-job registry.

With no broker configured (the embedded default) every task runs in-process and periodic jobs run
on a small background thread; with a broker they go to named queues served by ``enclave worker``
and ``enclave beat``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery, Task
from celery.schedules import crontab, schedule
from kombu.entity import Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from infra.db import engine_from_settings, make_session_factory, session_scope
from infra.logging import get_logger
from infra.settings import Settings

log = get_logger(__name__)

QUEUES = ("default", "email", "ingest", "erasure", "queries", "audit")
"""Named queues. A task named ``<queue>.<something>`` is routed to that queue."""

celery_app = Celery("enclave")


@dataclass(frozen=True)
class PeriodicJob:
    """A task that beat sends on a schedule."""

    name: str
    task: str
    every: timedelta | crontab
    kwargs: dict[str, Any]


PERIODIC_JOBS: dict[str, PeriodicJob] = {}


def register_periodic(name: str, task: str, every: timedelta | crontab, **kwargs: Any) -> None:
    """Declare a periodic job; picked up by Celery beat and by the in-process scheduler."""
    PERIODIC_JOBS[name] = PeriodicJob(name=name, task=task, every=every, kwargs=kwargs)
    celery_app.conf.beat_schedule = _beat_schedule()


def _beat_schedule() -> dict[str, dict[str, Any]]:
    return {
        job.name: {
            "task": job.task,
            "schedule": job.every if isinstance(job.every, crontab) else schedule(job.every),
            "kwargs": job.kwargs,
        }
        for job in PERIODIC_JOBS.values()
    }


def _route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str]:
    prefix = name.split(".", 1)[0]
    return {"queue": prefix if prefix in QUEUES else "default"}


class _State:
    settings: Settings | None = None
    engine: Engine | None = None
    session_factory: sessionmaker[Session] | None = None


def configure_celery(settings: Settings, *, engine: Engine | None = None) -> Celery:
    """Configure the process-wide Celery app from the settings."""
    in_process = settings.tasks_in_process
    celery_app.conf.update(
        broker_url=settings.broker_url or "memory://",
        result_backend=settings.effective_result_backend or None,
        task_always_eager=in_process,
        task_eager_propagates=True,
        task_store_eager_result=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue="default",
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],  # type: ignore[no-untyped-call]
        task_routes=(_route,),
        result_expires=timedelta(days=1),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        broker_transport_options={"socket_timeout": 5, "socket_connect_timeout": 3},
        redis_socket_connect_timeout=3,
        redis_socket_timeout=5,
        # A result store that is down must fail a publish quickly (the outbox retries it later),
        # not hold the request in Celery's default reconnect loop.
        result_backend_transport_options={"retry_policy": {"max_retries": 2, "interval_start": 0.2}},
        timezone="UTC",
        beat_schedule=_beat_schedule(),
        worker_hijack_root_logger=False,
    )
    _forget_connections()
    _State.settings = settings
    _State.engine = engine
    _State.session_factory = None
    return celery_app


def _forget_connections() -> None:
    """Drop connections and the result backend built for a previous configuration of this process.

    Celery caches them on first use; a process is normally configured once, but the test suite
    and ``enclave check`` switch between in-process and broker-backed settings.
    """
    celery_app._after_fork()
    celery_app._backend_cache = None
    celery_app._local.__dict__.pop("backend", None)


def task_session_factory() -> sessionmaker[Session]:
    """The session factory that tasks of this process use (created on first use)."""
    if _State.session_factory is None:
        if _State.settings is None:
            raise RuntimeError("configure_celery() was not called in this process")
        _State.engine = _State.engine or engine_from_settings(_State.settings)
        _State.session_factory = make_session_factory(_State.engine)
    return _State.session_factory


def task_settings() -> Settings:
    """The settings this process was configured with."""
    if _State.settings is None:
        raise RuntimeError("configure_celery() was not called in this process")
    return _State.settings


class DatabaseTask(Task):  # type: ignore[misc]
    """Task base giving each run its own session: committed on return, rolled back on error."""

    abstract = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A fresh unit of work for this task run."""
        with session_scope(task_session_factory()) as session:
            yield session


@celery_app.task(name="default.ping")
def ping() -> dict[str, Any]:
    """Answer with the name of the process that ran it: proves a worker consumes the queue."""
    import socket

    return {"pong": True, "host": socket.gethostname(), "in_process": celery_app.conf.task_always_eager}


class InProcessScheduler:
    """Runs the periodic jobs inside the serving process when no broker (and so no beat) exists."""

    def __init__(self, tick_seconds: float = 5.0) -> None:
        self._tick = tick_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="enclave-scheduler", daemon=True)
        self._last_run: dict[str, float] = {}

    def start(self) -> None:
        """Start the background thread."""
        now = time.monotonic()
        self._last_run = dict.fromkeys(PERIODIC_JOBS, now)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait briefly for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._tick * 2)

    def run_due(self, now: float) -> list[str]:
        """Run every job whose interval has passed; return their names."""
        ran = []
        for job in PERIODIC_JOBS.values():
            seconds = job.every.total_seconds() if isinstance(job.every, timedelta) else 86400.0
            if now - self._last_run.get(job.name, now) >= seconds:
                self._last_run[job.name] = now
                try:
                    celery_app.tasks[job.task].apply(kwargs=job.kwargs).get()
                    ran.append(job.name)
                except Exception:
                    log.exception("scheduler.job_failed", job=job.name)
        return ran

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self.run_due(time.monotonic())
