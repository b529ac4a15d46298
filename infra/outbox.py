"""Transactional job outbox: a job is stored in the request's transaction and sent after it commits.

If the request rolls back, the job never existed. If the process dies between the commit and the
send, the job is still in the table and the periodic ``default.outbox_flush`` sends it. Tasks are
therefore delivered at least once and must be idempotent; the outbox id is the Celery task id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from infra.db import Base
from infra.logging import get_logger
from infra.tasks import celery_app, register_periodic, task_session_factory

log = get_logger(__name__)

_PENDING_KEY = "outbox_pending"
MAX_ATTEMPTS = 50
"""After this many failed sends a job is left for an operator (``last_error`` says why)."""


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


class OutboxJob(Base):
    """A task waiting to be sent to the queue (or already sent, for the record)."""

    __tablename__ = "job_outbox"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    task_name: Mapped[str] = mapped_column(String(200))
    args: Mapped[list[Any]] = mapped_column(JSON, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


def enqueue(session: Session, task_name: str, *args: Any, **kwargs: Any) -> OutboxJob:
    """Store a job in the caller's transaction; it is sent only once that transaction commits."""
    if task_name not in celery_app.tasks:
        raise KeyError(f"unknown task {task_name!r}")
    job = OutboxJob(task_name=task_name, args=list(args), kwargs=dict(kwargs))
    session.add(job)
    session.flush()
    pending: list[str] = session.info.setdefault(_PENDING_KEY, [])
    pending.append(job.id)
    return job


def _after_commit(session: Session) -> None:
    ids = session.info.pop(_PENDING_KEY, [])
    if ids:
        # Sent on a fresh session bound like the committed one: the committed session may not
        # run SQL inside its own after_commit hook.
        dispatch(Session(bind=session.get_bind(), expire_on_commit=False), ids)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def install_session_hooks(session_class: type[Session] = Session) -> None:
    """Send stored jobs after every commit of sessions of this class; drop them on rollback."""
    from sqlalchemy import event

    if not event.contains(session_class, "after_commit", _after_commit):
        event.listen(session_class, "after_commit", _after_commit)
        event.listen(session_class, "after_soft_rollback", lambda s, _t: _after_rollback(s))


def dispatch(session: Session, ids: list[str]) -> int:
    """Send the given unsent jobs; mark each one sent. Returns how many were sent."""
    sent = 0
    with session:
        for job_id in ids:
            job = session.get(OutboxJob, job_id, with_for_update=False)
            if job is None or job.sent_at is not None:
                continue
            job.attempts += 1
            try:
                task = celery_app.tasks[job.task_name]
                task.apply_async(args=job.args, kwargs=job.kwargs, task_id=job.id)
            except Exception as exc:  # the broker may be down; the flush job retries
                job.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning("outbox.send_failed", job_id=job.id, task=job.task_name, error=type(exc).__name__)
            else:
                job.sent_at = utcnow()
                job.last_error = None
                sent += 1
            session.commit()
    return sent


@celery_app.task(name="default.outbox_flush")
def outbox_flush(older_than_seconds: int = 30) -> int:
    """Send jobs that were committed but not sent (the sender died, or the broker was down)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    factory = task_session_factory()
    with factory() as session:
        ids = list(
            session.scalars(
                select(OutboxJob.id)
                .where(
                    OutboxJob.sent_at.is_(None),
                    OutboxJob.created_at <= cutoff,
                    OutboxJob.attempts < MAX_ATTEMPTS,
                )
                .order_by(OutboxJob.created_at)
                .limit(1000)
            )
        )
    return dispatch(factory(), ids) if ids else 0


register_periodic("outbox-flush", "default.outbox_flush", timedelta(minutes=1))
