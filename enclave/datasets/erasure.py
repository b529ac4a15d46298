"""Erasure: the enclave's consumer of withdrawal events (``consent.decisions.withdrawals``).

For a withdrawal of some purposes, the datasets collected under those purposes are concerned; for an
erasure or a restriction, every dataset. In each, the subject's pseudonym of the dataset's domain is
looked up (the consent store holds the mapping); every published version holding it is rewritten
without their rows into a new object, and the old object is crypto-shredded (its stored bytes and its
wrapped data key destroyed, so no copy of it can be read again). The ledger records the proof —
which dataset versions were rewritten and which objects destroyed — under the withdrawal event's id,
never the subject's.

The consumer is idempotent: a second delivery finds no rows to remove and changes nothing. A worker
killed midway leaves each version either untouched or fully rewritten (each version is rewritten
in the delivery's transaction), so a re-run completes the rest.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, register_action
from access.audit.service import Actor, record
from consent.decisions.models import Pseudonym
from consent.decisions.withdrawals import WithdrawalNotice, WithdrawalReason
from enclave.datasets.ingestion import PSEUDONYM
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.objects.store import EncryptedStore, ObjectContext
from infra.logging import get_logger

log = get_logger(__name__)

CONSUMER_NAME = "enclave-erasure"


class ErasedDetails(Details):
    """Ledger proof of an erasure in one dataset version: no subject, only what changed."""

    withdrawal_event: Identifier
    dataset: Identifier
    version: int
    rows_removed: int
    objects_destroyed: list[str]
    objects_written: list[str]


ERASED = register_action("enclave.subject_rows_erased", ErasedDetails)


@dataclass
class DatasetErasure:
    """Removes a withdrawn subject's rows from the stored datasets."""

    store_factory: Callable[[], EncryptedStore]
    name: str = CONSUMER_NAME

    def handle(self, session: Session, notice: WithdrawalNotice) -> None:
        """Rewrite every version holding the subject's pseudonym without their rows."""
        if notice.subject_kind != "student":
            return  # datasets hold students' rows only
        query = select(Dataset).where(Dataset.destroyed_at.is_(None))
        if notice.reason is WithdrawalReason.withdrawn:
            query = query.where(Dataset.purpose.in_(notice.purposes))
        store: EncryptedStore | None = None
        for dataset in session.execute(query.order_by(Dataset.id)).scalars():
            pseudonym = session.execute(
                select(Pseudonym.pseudonym).where(
                    Pseudonym.domain == dataset.domain, Pseudonym.subject_id == notice.subject_id
                )
            ).scalar_one_or_none()
            if pseudonym is None:
                continue
            store = store or self.store_factory()
            for version in session.execute(
                select(DatasetVersion)
                .where(
                    DatasetVersion.dataset_id == dataset.id,
                    DatasetVersion.state == VersionState.published.value,
                )
                .order_by(DatasetVersion.version)
                .with_for_update()
            ).scalars():
                _erase_from_version(session, store, version, pseudonym, notice)


def _erase_from_version(
    session: Session, store: EncryptedStore, version: DatasetVersion, pseudonym: str, notice: WithdrawalNotice
) -> None:
    destroyed: list[str] = []
    written: list[str] = []
    objects: list[str] = []
    removed = 0
    for name in version.objects:
        ctx = ObjectContext(version.dataset_id, version.version, name)
        frame = pl.read_parquet(io.BytesIO(store.read_object(session, ctx)))
        kept = frame.filter(pl.col(PSEUDONYM) != pseudonym)
        if kept.height == frame.height:
            objects.append(name)
            continue
        removed += frame.height - kept.height
        buffer = io.BytesIO()
        kept.write_parquet(buffer, compression="zstd")
        new_name = _next_name(name)
        store.put_object(
            session, ObjectContext(version.dataset_id, version.version, new_name), [buffer.getvalue()]
        )
        store.destroy_object(session, ctx)
        objects.append(new_name)
        written.append(new_name)
        destroyed.append(name)
    if not removed:
        return
    version.objects = objects
    version.rows = (version.rows or 0) - removed
    session.flush()
    record(
        session,
        Actor.system(),
        ERASED,
        target_type="withdrawal",
        target_id=notice.event_id,
        details=ErasedDetails(
            withdrawal_event=notice.event_id,
            dataset=version.dataset_id,
            version=version.version,
            rows_removed=removed,
            objects_destroyed=destroyed,
            objects_written=written,
        ),
    )
    log.info("enclave.subject_rows_erased", dataset=version.dataset_id, version=version.version, rows=removed)


def _next_name(name: str) -> str:
    """``part-0000.parquet`` -> ``part-0000.e1.parquet`` -> ``part-0000.e2.parquet``."""
    stem, _, suffix = name.rpartition(".")
    base, dot, counter = stem.rpartition(".e")
    if dot and counter.isdigit():
        return f"{base}.e{int(counter) + 1}.{suffix}"
    return f"{stem}.e1.{suffix}"
