"""Celery tasks of ingestion: a queued upload, and the periodic resume of failed or lost jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from consent.identity import IdentityProtector
from enclave.datasets.ingest_jobs import RESUME_TASK, TASK, due_jobs, purge_quarantine, run_job
from enclave.objects.store import EncryptedStore
from infra.db import session_scope
from infra.keys import key_backend_from_settings
from infra.storage.factory import storage_from_settings
from infra.tasks import celery_app, register_periodic, task_session_factory, task_settings

RESUME_EVERY = timedelta(minutes=5)


def _store() -> EncryptedStore:
    settings = task_settings()
    return EncryptedStore(None, key_backend_from_settings(settings), storage_from_settings(settings))


@celery_app.task(name=TASK)
def dataset_upload(job_id: str) -> dict[str, Any]:
    """Ingest a queued upload and publish its version (idempotent: a published job is left alone)."""
    store = _store()
    return {
        "job": job_id,
        "state": run_job(task_session_factory(), store, IdentityProtector(store.keys), job_id),
    }


@celery_app.task(name=RESUME_TASK)
def resume_jobs() -> dict[str, Any]:
    """Send again every job that failed with a retryable error or lost its worker; purge old reports."""
    with session_scope(task_session_factory()) as session:
        due = due_jobs(session)
    for job_id in due:
        dataset_upload.apply_async(args=[job_id])
    with session_scope(task_session_factory()) as session:
        purged = purge_quarantine(session, _store())
    return {"resent": len(due), "quarantine_purged": purged}


register_periodic("ingestion-resume", RESUME_TASK, RESUME_EVERY)
