"""The catalog: declaring datasets, and what each role may read of them.

Any signed-in staff member reads a dataset's metadata and schema (researchers need them to propose
a project); version counts (rows stored, subjects excluded for lack of consent) are shown only to
data stewards and the DPO, since exact counts about children are not for researchers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, Role, register_action
from access.audit.service import record
from access.principal import Principal
from consent.forms.models import Purpose
from enclave.datasets.exceptions import DatasetConflict, DatasetNotFound, InvalidDataset
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.datasets.schemas import DatasetCreate, DatasetRead, DatasetSchema, VersionRead
from infra.logging import get_logger

log = get_logger(__name__)


class DatasetDetails(Details):
    """Ledger details of a new dataset: ids, purpose, dates and counts of variables."""

    dataset: Identifier
    purpose: Identifier
    domain: Identifier
    retention_until: date
    variables: int
    special_category_variables: int


DATASET_CREATED = register_action("enclave.dataset_created", DatasetDetails)


def create_dataset(
    session: Session, principal: Principal, data: DatasetCreate, *, today: date | None = None
) -> Dataset:
    """Declare a dataset; its id is permanent and its schema checks every upload."""
    purposes = set(session.execute(select(Purpose.code)).scalars())
    if data.purpose not in purposes:
        raise InvalidDataset("purpose", f"{data.purpose!r} is not a consent purpose", code="unknown_purpose")
    if data.retention_until <= (today or datetime.now(UTC).date()):
        raise InvalidDataset("retention_until", "must be in the future", code="retention_in_the_past")
    if session.get(Dataset, data.id) is not None:
        raise DatasetConflict(f"dataset {data.id} already exists; ids are permanent", code="dataset_exists")
    dataset = Dataset(
        id=data.id,
        title=data.title,
        description=data.description,
        purpose=data.purpose,
        domain=data.domain,
        retention_until=data.retention_until,
        schema=data.schema_.model_dump(mode="json"),
        created_by=principal.account_id,
    )
    try:
        with session.begin_nested():
            session.add(dataset)
            session.flush()
    except IntegrityError:
        raise DatasetConflict(
            f"dataset {data.id} already exists; ids are permanent", code="dataset_exists"
        ) from None
    variables = data.schema_.variables
    record(
        session,
        principal.actor,
        DATASET_CREATED,
        target_type="dataset",
        target_id=dataset.id,
        details=DatasetDetails(
            dataset=dataset.id,
            purpose=dataset.purpose,
            domain=dataset.domain,
            retention_until=dataset.retention_until,
            variables=len(variables),
            special_category_variables=sum(v.special_category for v in variables),
        ),
    )
    log.info("enclave.dataset_created", dataset=dataset.id)
    return dataset


def _sees_counts(principal: Principal) -> bool:
    return principal.has(Role.data_steward, Role.dpo)


def _read(session: Session, principal: Principal, dataset: Dataset) -> DatasetRead:
    schema = DatasetSchema.model_validate(dataset.schema)
    versions = list(
        session.execute(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.version)
        ).scalars()
    )
    published = [v.version for v in versions if v.state == VersionState.published.value]
    return DatasetRead(
        id=dataset.id,
        title=dataset.title,
        description=dataset.description,
        purpose=dataset.purpose,
        domain=dataset.domain,
        retention_until=dataset.retention_until,
        schema_=schema,
        special_category_variables=[v.name for v in schema.variables if v.special_category],
        latest_version=max(published) if published else None,
        versions=[
            VersionRead(
                version=v.version,
                state=v.state,
                created_at=v.created_at,
                published_at=v.published_at,
                rows=v.rows,
                excluded_without_consent=v.excluded_without_consent,
            )
            for v in versions
        ]
        if _sees_counts(principal)
        else None,
    )


def catalog(session: Session, principal: Principal) -> list[DatasetRead]:
    """Every dataset not destroyed, as the principal may see it."""
    datasets = session.execute(
        select(Dataset).where(Dataset.destroyed_at.is_(None)).order_by(Dataset.id)
    ).scalars()
    return [_read(session, principal, d) for d in datasets]


def get_dataset(session: Session, principal: Principal, dataset_id: str) -> DatasetRead:
    """One catalog entry."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.destroyed_at is not None:
        raise DatasetNotFound(dataset_id)
    return _read(session, principal, dataset)
