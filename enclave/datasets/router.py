"""HTTP endpoints of the catalog under /api/datasets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from access.dependencies import CurrentPrincipal, StewardOrDpoDep
from enclave.datasets import service
from enclave.datasets.schemas import DatasetCreate, DatasetRead
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
