"""HTTP endpoints of the catalog under /api/datasets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Path, Query, Request, UploadFile, status
from pydantic import BaseModel

from access.dependencies import CurrentPrincipal, StewardDep, StewardOrDpoDep
from consent.dependencies import IdentityDep
from enclave.datasets import ingestion, service
from enclave.datasets.schemas import DatasetCreate, DatasetRead
from enclave.objects.store import EncryptedStore
from infra.errors import PayloadTooLarge
from infra.web.deps import SessionDep

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


@router.post(
    "/{dataset_id}/versions",
    response_model=IngestAnswer,
    status_code=status.HTTP_201_CREATED,
    responses={**PROBLEMS, 413: {"description": "The file is too large for an upload over HTTP."}},
)
def upload_version(
    *,
    dataset_id: DatasetPath,
    request: Request,
    principal: StewardDep,
    session: SessionDep,
    protector: IdentityDep,
    file: Annotated[UploadFile, File(description="CSV (UTF-8) or Parquet with the declared columns.")],
    fmt: Annotated[str, Query(alias="format", pattern="^(csv|parquet)$")] = "csv",
) -> IngestAnswer:
    """Upload a new version: validated, consent-filtered, pseudonymised, encrypted and published at once.

    Any bad row refuses the whole file (422, every problem with its row and column).
    """
    data = file.file.read(ingestion.MAX_UPLOAD + 1)
    if len(data) > ingestion.MAX_UPLOAD:
        raise PayloadTooLarge("the file is too large for an upload over HTTP: use the command line")
    components = request.app.state.components
    store = EncryptedStore(None, components.keys, components.storage)
    report = ingestion.ingest(session, principal, store, protector, dataset_id=dataset_id, data=data, fmt=fmt)
    return IngestAnswer(
        dataset_id=report.dataset_id,
        version=report.version,
        rows_in=report.rows_in,
        rows_stored=report.rows_stored,
        excluded_without_consent=report.excluded_without_consent,
    )
