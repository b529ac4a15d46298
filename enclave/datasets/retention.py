"""Retention (GDPR Art. 5(1)(e)): datasets are destroyed on their retention date, the DPO warned first.

A daily job:

* warns the DPO, once, about every dataset whose retention date is within ``WARNING`` (a ledger
  entry ``enclave.retention_warning`` the DPO's review shows, and a log event), so a lawful
  extension can be decided in time;
* destroys every dataset whose retention date has come: each version's objects are crypto-shredded
  (stored bytes deleted and data keys destroyed), the versions marked ``destroyed`` and the dataset
  removed from the catalog; the ledger keeps the proof (which versions and objects, which keys).

Each dataset is handled in its own transaction, so a crash leaves some datasets done and the rest for
the next run; destroying twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from access.audit.actions import Details, Identifier, register_action
from access.audit.service import Actor, record
from enclave.datasets.frames import frames
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.objects.store import EncryptedStore, ObjectContext
from infra.logging import get_logger

log = get_logger(__name__)

WARNING = timedelta(days=30)


class RetentionWarningDetails(Details):
    """Ledger details of a warning: the dataset and its retention date."""

    dataset: Identifier
    retention_until: date


class RetentionDestroyedDetails(Details):
    """Ledger proof of a destroyed dataset: versions, objects and the number of data keys destroyed."""

    dataset: Identifier
    retention_until: date
    versions: list[int]
    objects: list[str]
    data_keys_destroyed: int


RETENTION_WARNING = register_action("enclave.retention_warning", RetentionWarningDetails)
RETENTION_DESTROYED = register_action("enclave.dataset_destroyed", RetentionDestroyedDetails)


@dataclass
class RetentionResult:
    """What a run did."""

    warned: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)


def _destroy(session: Session, store: EncryptedStore, dataset: Dataset, moment: datetime) -> None:
    versions = list(
        session.execute(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.version)
        ).scalars()
    )
    objects: list[str] = []
    keys = 0
    for version in versions:
        for name in [*version.objects, *([version.quarantine_object] if version.quarantine_object else [])]:
            keys += len(store.destroy_object(session, ObjectContext(dataset.id, version.version, name)))
            objects.append(f"v{version.version}/{name}")
        version.state = VersionState.destroyed.value
    dataset.destroyed_at = moment
    session.flush()
    record(
        session,
        Actor.system(),
        RETENTION_DESTROYED,
        target_type="dataset",
        target_id=dataset.id,
        details=RetentionDestroyedDetails(
            dataset=dataset.id,
            retention_until=dataset.retention_until,
            versions=[v.version for v in versions],
            objects=objects,
            data_keys_destroyed=keys,
        ),
    )
    log.info("enclave.dataset_destroyed", dataset=dataset.id, objects=len(objects))


def run_retention(
    sessions: sessionmaker[Session], store: EncryptedStore, *, now: datetime | None = None
) -> RetentionResult:
    """Warn about datasets near their retention date and destroy those whose date has come."""
    moment = now or datetime.now(UTC)
    today = moment.date()
    result = RetentionResult()
    with sessions() as session:
        ids = list(
            session.execute(
                select(Dataset.id)
                .where(Dataset.destroyed_at.is_(None), Dataset.retention_until <= today + WARNING)
                .order_by(Dataset.id)
            ).scalars()
        )
    for dataset_id in ids:
        with sessions() as session, session.begin():
            dataset = session.get(Dataset, dataset_id, with_for_update=True)
            if dataset is None or dataset.destroyed_at is not None:
                continue
            if dataset.retention_until <= today:
                _destroy(session, store, dataset, moment)
                result.destroyed.append(dataset_id)
            elif dataset.retention_warned_at is None:
                dataset.retention_warned_at = moment
                record(
                    session,
                    Actor.system(),
                    RETENTION_WARNING,
                    target_type="dataset",
                    target_id=dataset.id,
                    details=RetentionWarningDetails(
                        dataset=dataset.id, retention_until=dataset.retention_until
                    ),
                )
                log.warning(
                    "enclave.retention_warning", dataset=dataset.id, until=str(dataset.retention_until)
                )
                result.warned.append(dataset_id)
        if dataset_id in result.destroyed:
            frames.invalidate(dataset_id)  # committed: the plaintext this process holds goes too
    return result
