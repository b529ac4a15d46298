"""HTTP endpoints of the catalog under /api/datasets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, File, Path, Query, Request, Response, UploadFile, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from access.dependencies import CurrentPrincipal, StewardDep, StewardOrDpoDep
from consent.dependencies import IdentityDep
from enclave.datasets import ingest_jobs, ingestion, service
from enclave.datasets.ingest_source import READ_SIZE
from enclave.datasets.models import IngestionJob
from enclave.datasets.schemas import DatasetCreate, DatasetRead
from enclave.objects.store import EncryptedStore
from infra.errors import PayloadTooLarge
from infra.web.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/api/datasets", tags=["datasets"])

PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only data stewards and the DPO declare datasets."},
    404: {"description": "No such dataset."},
    409: {"description": "The dataset id is taken."},
    422: {"description": "The declaration is invalid; the answer names the field and the rule."},
}
DatasetPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


@router.post(
    "",
    response_model=DatasetRead,
    response_model_by_alias=True,
    status_code=status.HTTP_201_CREATED,
    responses=PROBLEMS,
)
def create_dataset(body: DatasetCreate, principal: StewardOrDpoDep, session: SessionDep) -> DatasetRead:
    """Declare a dataset: schema (subject id, identifiers to drop, typed variables), purpose, retention."""
    dataset = service.create_dataset(session, principal, body)
    return service.get_dataset(session, principal, dataset.id)


@router.get("", response_model=list[DatasetRead], response_model_by_alias=True, responses=PROBLEMS)
def catalog(principal: CurrentPrincipal, session: SessionDep) -> list[DatasetRead]:
    """The catalog: metadata and schemas; version counts only for stewards and the DPO."""
    return service.catalog(session, principal)


@router.get("/{dataset_id}", response_model=DatasetRead, response_model_by_alias=True, responses=PROBLEMS)
def get_dataset(dataset_id: DatasetPath, principal: CurrentPrincipal, session: SessionDep) -> DatasetRead:
    """One dataset's metadata and schema."""
    return service.get_dataset(session, principal, dataset_id)


class IngestAnswer(BaseModel):
    """What an upload did: counts are for the steward (and the ledger), never for researchers."""

    dataset_id: str
    version: int
    rows_in: int
    rows_stored: int
    excluded_without_consent: int
    quarantined: int = 0


class JobAccepted(BaseModel):
    """A large upload was stored encrypted and queued: poll ``status_url`` for the outcome."""

    job_id: str
    dataset_id: str
    version: int
    state: str
    status_url: str


UPLOAD_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS,
    202: {"model": JobAccepted, "description": "A large file: stored encrypted and queued for a worker."},
    413: {"description": "The file is too large for an upload over HTTP."},
    503: {"description": "The object store is unreachable; nothing was stored. Retry later."},
}
QuarantineQuery = Annotated[
    bool,
    Query(
        description="Store the good rows and set bad ones aside in an encrypted report, instead of refusing."
    ),
]
FormatQuery = Annotated[str, Query(alias="format", pattern="^(csv|parquet)$")]


def _store(request: Request) -> EncryptedStore:
    components = request.app.state.components
    return EncryptedStore(None, components.keys, components.storage)


def _answer(report: ingestion.IngestReport) -> IngestAnswer:
    return IngestAnswer(
        dataset_id=report.dataset_id,
        version=report.version,
        rows_in=report.rows_in,
        rows_stored=report.rows_stored,
        excluded_without_consent=report.excluded_without_consent,
        quarantined=report.quarantined,
    )


def _queued(job: IngestionJob) -> JSONResponse:
    body = JobAccepted(
        job_id=job.id,
        dataset_id=job.dataset_id,
        version=job.version,
        state=job.state,
        status_url=f"/api/datasets/{job.dataset_id}/ingestions/{job.id}",
    )
    return JSONResponse(body.model_dump(), status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/{dataset_id}/versions",
    response_model=IngestAnswer,
    status_code=status.HTTP_201_CREATED,
    responses=UPLOAD_PROBLEMS,
)
def upload_version(
    *,
    dataset_id: DatasetPath,
    request: Request,
    principal: StewardDep,
    session: SessionDep,
    settings: SettingsDep,
    protector: IdentityDep,
    file: Annotated[UploadFile, File(description="CSV (UTF-8) or Parquet with the declared columns.")],
    fmt: FormatQuery = "csv",
    quarantine: QuarantineQuery = False,
) -> IngestAnswer | JSONResponse:
    """Upload a new version: validated, consent-filtered, pseudonymised, encrypted and published at once.

    Any bad row refuses the whole file (422, every problem with its row and column), unless
    ``quarantine`` is set. A file larger than the server's threshold is stored encrypted and ingested
    by a worker: the answer is then 202 with a job to poll.
    """
    size = file.size if file.size is not None else 0
    if size > ingestion.MAX_UPLOAD:
        raise PayloadTooLarge("the file is too large for an upload over HTTP: use the command line")
    if size > settings.ingest_async_threshold_bytes:
        chunks = iter(lambda: file.file.read(READ_SIZE), b"")
        job = ingest_jobs.start_job(
            session,
            principal,
            _store(request),
            dataset_id=dataset_id,
            chunks=chunks,
            fmt=fmt,
            quarantine=quarantine,
        )
        session.commit()
        return _queued(job)
    data = file.file.read(ingestion.MAX_UPLOAD + 1)
    if len(data) > ingestion.MAX_UPLOAD:
        raise PayloadTooLarge("the file is too large for an upload over HTTP: use the command line")
    report = ingestion.ingest(
        session,
        principal,
        _store(request),
        protector,
        dataset_id=dataset_id,
        data=data,
        fmt=fmt,
        quarantine=quarantine,
    )
    return _answer(report)


@router.post(
    "/{dataset_id}/uploads",
    response_model=IngestAnswer,
    status_code=status.HTTP_201_CREATED,
    responses=UPLOAD_PROBLEMS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def upload_raw(
    *,
    dataset_id: DatasetPath,
    request: Request,
    principal: StewardDep,
    session: SessionDep,
    settings: SettingsDep,
    protector: IdentityDep,
    fmt: FormatQuery = "csv",
    quarantine: QuarantineQuery = False,
) -> IngestAnswer | JSONResponse:
    """Upload a new version as the raw request body, streamed: never written to disk in plaintext.

    Up to the server's threshold (and with a ``Content-Length``) it is ingested at once (201);
    larger bodies are encrypted on the fly into a staging object and ingested by a worker (202).
    """
    length = request.headers.get("content-length")
    chunks = _body(request)
    if length is not None and length.isdigit() and int(length) <= settings.ingest_async_threshold_bytes:
        data = b"".join(chunks)
        report = ingestion.ingest(
            session,
            principal,
            _store(request),
            protector,
            dataset_id=dataset_id,
            data=data,
            fmt=fmt,
            quarantine=quarantine,
        )
        return _answer(report)
    job = ingest_jobs.start_job(
        session,
        principal,
        _store(request),
        dataset_id=dataset_id,
        chunks=chunks,
        fmt=fmt,
        quarantine=quarantine,
    )
    session.commit()
    return _queued(job)


def _body(request: Request) -> Iterator[bytes]:
    """The request body chunk by chunk, read from this worker thread (the route is synchronous)."""
    stream = request.stream()
    while True:
        try:
            chunk = anyio.from_thread.run(stream.__anext__)
        except StopAsyncIteration:
            return
        if chunk:
            yield chunk


@router.get(
    "/{dataset_id}/ingestions/{job_id}",
    response_model=ingest_jobs.JobRead,
    responses={403: PROBLEMS[403], 404: {"description": "No such job for this dataset."}},
)
def get_ingestion(
    dataset_id: DatasetPath,
    job_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    principal: StewardDep,
    session: SessionDep,
) -> ingest_jobs.JobRead:
    """Where a queued upload stands: queued, running, published (with its counts) or failed (with why)."""
    return ingest_jobs.get_job(session, principal, dataset_id, job_id)


@router.get(
    "/{dataset_id}/versions/{version}/quarantine",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "The bad rows with row, column, reason and values.",
        },
        403: PROBLEMS[403],
        404: {"description": "No quarantine report for this version."},
    },
)
def get_quarantine(
    dataset_id: DatasetPath,
    version: Annotated[int, Path(ge=1)],
    request: Request,
    principal: StewardDep,
    session: SessionDep,
) -> Response:
    """The quarantine report of a version (data stewards of the uploader's country only)."""
    data = ingest_jobs.read_quarantine(session, principal, _store(request), dataset_id, version)
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{dataset_id}-v{version}-quarantine.csv"',
            "Cache-Control": "no-store",
        },
    )
