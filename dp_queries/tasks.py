"""The worker's side of DP queries: run a queued query's release; send again the jobs of dead workers.

A run marks the job ``running`` (counting the attempt) in one transaction, then runs the release
transaction of ``dp_queries.service``, which also marks the job ``done``: the release, its spend and
the job's new state commit together or not at all. A refusal (budget exhausted, project suspended
meanwhile, ...) fails the job with its problem document; any other error rolls the release back,
puts the job back to ``queued`` and retries it. A worker killed mid-run leaves the job ``running``
with nothing spent; the periodic sweep sends it again, and the project's lock with the job's state
(re-read under that lock) makes a second run of a finished job return its release instead of
spending twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dp_queries import service
from dp_queries.models import QueryJob
from enclave.objects.store import EncryptedStore
from infra.db import session_scope
from infra.errors import EnclaveError
from infra.keys import key_backend_from_settings
from infra.logging import get_logger
from infra.outbox import enqueue
from infra.storage.factory import storage_from_settings
from infra.tasks import DatabaseTask, celery_app, register_periodic, task_session_factory, task_settings

log = get_logger(__name__)

MAX_ATTEMPTS = 5
STALE_AFTER = timedelta(minutes=10)
"""A job queued or running for this long without a change lost its worker; the sweep sends it again."""
SWEEP_TASK = "queries.dp_requeue_stale"


def _store() -> EncryptedStore:
    settings = task_settings()
    return EncryptedStore(None, key_backend_from_settings(settings), storage_from_settings(settings))


def run_job(job_id: str, store: EncryptedStore, *, final_attempt: bool = False) -> str:
    """Run one job to its end (done or failed) or leave it queued for a retry; return its status.

    Unexpected errors are re-raised after the job was put back (or failed, on the final attempt).
    """
    factory = task_session_factory()
    with session_scope(factory) as session:
        job = service.start_job(session, job_id)
        if job is None:
            found = session.get(QueryJob, job_id)
            return found.status if found is not None else "missing"
    try:
        with session_scope(factory) as session:
            job = service.run_job_release(session, job_id, store)
            status = job.status
    except EnclaveError as error:
        with session_scope(factory) as session:
            service.fail_job(session, job_id, error)
        log.info("dp.job_refused", job_id=job_id, reason=error.extra.get("reason"))
        return "failed"
    except Exception as error:
        with session_scope(factory) as session:
            service.requeue_job(session, job_id, error, give_up=final_attempt)
        log.warning("dp.job_crashed", job_id=job_id, error=type(error).__name__, final=final_attempt)
        raise
    return status


@celery_app.task(name=service.RUN_TASK, base=DatabaseTask, bind=True, max_retries=MAX_ATTEMPTS - 1)
def dp_release(self: DatabaseTask, job_id: str) -> dict[str, Any]:
    """Run a queued DP query; retried with back-off after an unexpected error."""
    store = _store()
    if self.request.is_eager:
        # In-process (no broker): the retries run at once, within this call.
        for attempt in range(MAX_ATTEMPTS):
            final = attempt == MAX_ATTEMPTS - 1
            try:
                return {"job_id": job_id, "status": run_job(job_id, store, final_attempt=final)}
            except Exception:
                if final:
                    raise
    final = self.request.retries >= MAX_ATTEMPTS - 1
    try:
        status = run_job(job_id, store, final_attempt=final)
    except Exception as error:
        if final:
            raise
        raise self.retry(exc=error, countdown=min(2**self.request.retries, 60)) from error
    return {"job_id": job_id, "status": status}


def requeue_stale(now: datetime | None = None, older_than: timedelta = STALE_AFTER) -> int:
    """Send again every job whose worker died (queued or running, unchanged for ``older_than``)."""
    cutoff = (now or datetime.now(UTC)) - older_than
    with session_scope(task_session_factory()) as session:
        ids = service.stale_jobs(session, cutoff)
        for job_id in ids:
            job = session.get(QueryJob, job_id)
            if job is not None:
                job.updated_at = datetime.now(UTC)
            enqueue(session, service.RUN_TASK, job_id)
    return len(ids)


@celery_app.task(name=SWEEP_TASK, base=DatabaseTask, bind=True)
def dp_requeue_stale(self: DatabaseTask) -> int:
    """Periodic: send again the DP jobs left behind by a dead worker."""
    return requeue_stale()


register_periodic("dp-requeue-stale", SWEEP_TASK, timedelta(minutes=5))
