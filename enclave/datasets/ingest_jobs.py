"""Ingestion jobs: a large upload is stored encrypted, then ingested by a worker.

``start_job`` reserves the next version number (a version row in state ``ingesting``, invisible to
the query engine), streams the upload into a *staging object* of that version through the
encrypted store (fresh data key; the plaintext never touches a disk), records the job and queues
the task through the transactional outbox — all in the caller's transaction.

The task (``ingest.dataset_upload``) runs ``ingest_stream`` on the decrypted staging object. It is
idempotent: a job already published is left alone, and the version is published in one transaction
with the job's report, so a worker killed in the middle leaves the job ``running`` with nothing
published and the next run starts again from the staging object. A failure is recorded on the job
with its detail: a retryable one (object store or key service down) is tried again by the periodic
``ingest.resume_jobs`` (every five minutes, up to ``MAX_ATTEMPTS``), as is a job left ``running``
for longer than ``LEASE``. The staging object is crypto-shredded once the version is published or
the job has failed for good.

A quarantine report (``quarantine.csv`` of a version) is read back by a data steward of the
uploader's country only: it holds the bad rows as they were uploaded, names included. Researchers
and the DPO never read it. It is crypto-shredded 30 days after the version was published (by the
periodic resume) or with the dataset at its retention date; the count stays on the version.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from access.accounts.models import Account
from access.audit.actions import Role
from access.principal import Principal
from consent.identity import IdentityProtector
from enclave.datasets.exceptions import DatasetNotFound, InvalidDataset
from enclave.datasets.ingestion import QUARANTINE, IngestReport, ingest_stream
from enclave.datasets.models import Dataset, DatasetVersion, IngestionJob, JobState, VersionState
from enclave.objects.store import EncryptedStore, ObjectContext
from infra.db import session_scope
from infra.errors import EnclaveError, Forbidden, NotFound
from infra.logging import get_logger
from infra.outbox import enqueue

log = get_logger(__name__)

TASK = "ingest.dataset_upload"
RESUME_TASK = "ingest.resume_jobs"
MAX_ATTEMPTS = 5
LEASE = timedelta(minutes=30)
"""A job ``running`` for longer than this is taken to have lost its worker."""


class JobNotFound(NotFound):
    """No such ingestion job for this dataset."""

    type_slug = "ingestion-job-not-found"
    title = "No such ingestion job"


class JobRead(BaseModel):
    """An ingestion job as its steward sees it."""

    id: str
    dataset_id: str
    version: int
    state: str
    format: str
    quarantine: bool
    source_bytes: int
    attempts: int
    retryable: bool
    error: dict[str, Any] | None
    report: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _steward(principal: Principal) -> str:
    if not principal.has(Role.data_steward) or principal.country is None:
        raise Forbidden(
            "only a data steward of a country uploads research data", extra={"reason": "not_a_steward"}
        )
    return principal.country


def start_job(
    session: Session,
    principal: Principal,
    store: EncryptedStore,
    *,
    dataset_id: str,
    chunks: Iterable[bytes],
    fmt: str = "csv",
    quarantine: bool = False,
) -> IngestionJob:
    """Store the upload as an encrypted staging object and queue its ingestion (after commit)."""
    country = _steward(principal)
    if fmt not in ("csv", "parquet"):
        raise InvalidDataset("format", "must be csv or parquet", code="unknown_format")
    dataset = session.get(Dataset, dataset_id, with_for_update=True)
    if dataset is None or dataset.destroyed_at is not None:
        raise DatasetNotFound(dataset_id)
    number = (
        session.execute(
            select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id)
        ).scalar_one()
        or 0
    ) + 1
    job_id = str(uuid.uuid4())
    staging = f"staging-{job_id}.{fmt}"
    session.add(
        DatasetVersion(
            dataset_id=dataset.id,
            version=number,
            state=VersionState.ingesting.value,
            schema=dataset.schema,
            objects=[],
            created_by=principal.account_id,
        )
    )
    session.flush()
    stored = store.put_object(session, ObjectContext(dataset.id, number, staging), chunks)
    job = IngestionJob(
        id=job_id,
        dataset_id=dataset.id,
        version=number,
        state=JobState.queued.value,
        format=fmt,
        quarantine=quarantine,
        staging_object=staging,
        source_bytes=stored.plaintext_bytes,
        requested_by=principal.account_id,
        country=country,
        schools=sorted(principal.schools),
        attempts=0,
        retryable=False,
    )
    session.add(job)
    session.flush()
    enqueue(session, TASK, job_id)
    log.info("enclave.ingestion_queued", dataset=dataset.id, version=number, job=job_id)
    return job


def get_job(session: Session, principal: Principal, dataset_id: str, job_id: str) -> JobRead:
    """A job of a dataset, for a data steward of the job's country."""
    country = _steward(principal)
    job = session.get(IngestionJob, job_id)
    if job is None or job.dataset_id != dataset_id or job.country != country:
        raise JobNotFound(f"no ingestion job {job_id} for dataset {dataset_id}")
    return JobRead.model_validate(job, from_attributes=True)


def _principal(job: IngestionJob) -> Principal:
    return Principal(
        account_id=job.requested_by,
        roles=frozenset({Role.data_steward}),
        country=job.country,
        schools=frozenset(job.schools),
    )


def run_job(
    sessions: sessionmaker[Session],
    store: EncryptedStore,
    protector: IdentityProtector,
    job_id: str,
    *,
    progress: Callable[[Any], None] | None = None,
) -> str:
    """Ingest a job's staging object and publish its version; returns the job's final state.

    Idempotent: a published job is left alone (its staging object removed if still there).
    """
    with session_scope(sessions) as session:
        job = session.get(IngestionJob, job_id, with_for_update=True)
        if job is None:
            log.warning("enclave.ingestion_job_missing", job=job_id)
            return "missing"
        if job.state == JobState.published.value:
            _drop_staging(session, store, job)
            return job.state
        job.state = JobState.running.value
        job.attempts += 1
        job.started_at = datetime.now(UTC)
        job.error = None
        dataset_id, version, staging, fmt = job.dataset_id, job.version, job.staging_object, job.format
    ctx = ObjectContext(dataset_id, version, staging)
    try:
        with session_scope(sessions) as session:
            job = session.get(IngestionJob, job_id, with_for_update=True)
            if job is None or job.state == JobState.published.value:
                return job.state if job else "missing"

            def chunks() -> Iterable[bytes]:
                return store.open_object(session, ctx)

            report = ingest_stream(
                session,
                _principal(job),
                store,
                protector,
                dataset_id=dataset_id,
                fmt=fmt,
                chunks=chunks,
                quarantine=job.quarantine,
                version=version,
                progress=progress,
            )
            job.state = JobState.published.value
            job.retryable = False
            job.report = _report(report)
            job.finished_at = datetime.now(UTC)
    except Exception as error:
        _failed(sessions, store, job_id, error)
        return JobState.failed.value
    with session_scope(sessions) as session:
        job = session.get(IngestionJob, job_id)
        if job is not None:
            _drop_staging(session, store, job)
    log.info("enclave.ingestion_published", dataset=dataset_id, version=version, job=job_id)
    return JobState.published.value


def _report(report: IngestReport) -> dict[str, Any]:
    return {
        "version": report.version,
        "rows_in": report.rows_in,
        "rows_stored": report.rows_stored,
        "excluded_without_consent": report.excluded_without_consent,
        "quarantined": report.quarantined,
        "parts": len(report.objects),
    }


def _failed(sessions: sessionmaker[Session], store: EncryptedStore, job_id: str, error: Exception) -> None:
    retryable = bool(getattr(error, "retryable", False))
    if isinstance(error, EnclaveError):
        detail: dict[str, Any] = {"status": error.status_code, "detail": error.detail}
        extra = error.extra or {}
        for key in ("reason", "errors", "error_count"):
            if key in extra:
                detail[key] = extra[key]
    else:
        log.exception("enclave.ingestion_crashed", job=job_id)
        detail = {"status": 500, "detail": f"ingestion failed: {type(error).__name__}"}
        retryable = True
    with session_scope(sessions) as session:
        job = session.get(IngestionJob, job_id, with_for_update=True)
        if job is None:
            return
        job.state = JobState.failed.value
        job.retryable = retryable and job.attempts < MAX_ATTEMPTS
        job.error = detail
        job.finished_at = datetime.now(UTC)
        if not job.retryable:
            version = session.execute(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == job.dataset_id, DatasetVersion.version == job.version
                )
            ).scalar_one_or_none()
            if version is not None and version.state == VersionState.ingesting.value:
                version.state = VersionState.failed.value
            try:
                _drop_staging(session, store, job)
            except EnclaveError:
                log.warning("enclave.ingestion_staging_left", job=job_id)
    log.warning("enclave.ingestion_failed", job=job_id, retryable=retryable, status=detail["status"])


def _drop_staging(session: Session, store: EncryptedStore, job: IngestionJob) -> None:
    store.destroy_object(session, ObjectContext(job.dataset_id, job.version, job.staging_object))


def due_jobs(session: Session, now: datetime | None = None) -> list[str]:
    """Jobs to send again: failed with a retryable error, or running past their lease."""
    moment = now or datetime.now(UTC)
    return list(
        session.execute(
            select(IngestionJob.id)
            .where(
                or_(
                    (IngestionJob.state == JobState.failed.value) & IngestionJob.retryable,
                    (IngestionJob.state == JobState.running.value)
                    & (IngestionJob.started_at < moment - LEASE),
                )
            )
            .order_by(IngestionJob.created_at)
        ).scalars()
    )


def read_quarantine(
    session: Session, principal: Principal, store: EncryptedStore, dataset_id: str, version: int
) -> bytes:
    """A version's quarantine report (CSV), for a data steward of the uploader's country only."""
    country = _steward(principal)
    row = session.execute(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == version
        )
    ).scalar_one_or_none()
    uploader = session.get(Account, row.created_by) if row is not None else None
    if row is None or not row.quarantine_object or uploader is None or uploader.country != country:
        raise NotFound(
            f"no quarantine report for version {version} of {dataset_id}", extra={"reason": "no_quarantine"}
        )
    return store.read_object(session, ObjectContext(dataset_id, version, row.quarantine_object or QUARANTINE))


QUARANTINE_KEPT = timedelta(days=30)
"""A quarantine report holds identified rows as uploaded: it is crypto-shredded after this long."""


def purge_quarantine(session: Session, store: EncryptedStore, now: datetime | None = None) -> int:
    """Crypto-shred the quarantine reports older than ``QUARANTINE_KEPT``; returns how many.

    The count of quarantined rows stays on the version; only the report's object and key go.
    """
    moment = now or datetime.now(UTC)
    versions = session.execute(
        select(DatasetVersion)
        .where(
            DatasetVersion.quarantine_object.is_not(None),
            DatasetVersion.published_at < moment - QUARANTINE_KEPT,
        )
        .with_for_update(skip_locked=True)
    ).scalars()
    purged = 0
    for version in versions:
        if version.quarantine_object:
            store.destroy_object(
                session, ObjectContext(version.dataset_id, version.version, version.quarantine_object)
            )
        version.quarantine_object = None
        purged += 1
    session.flush()
    if purged:
        log.info("enclave.quarantine_purged", reports=purged)
    return purged
