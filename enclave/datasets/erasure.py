"""Erasure: the enclave's consumer of withdrawal events (``consent.decisions.withdrawals``).

For a withdrawal of some purposes, the datasets collected under those purposes are concerned; for an
erasure or a restriction, every dataset. In each, the subject's pseudonym of the dataset's domain is
looked up (the consent store holds the mapping); every published version holding it is rewritten
without their rows into a new object, and the old object is crypto-shredded (its wrapped data key
destroyed and its stored bytes deleted, so no copy of it can be read again). The ledger records the
proof — which dataset versions were rewritten and which objects destroyed — under the withdrawal
event's id, never the subject's.

**Crashes.** Each version is rewritten in a transaction of its own (the version's row locked), which
commits the new object's data key, the version's new object list, the old data key's destruction
and the proof together. The old object's bytes are deleted only after that commit: deleting them
earlier would lose the version if the transaction then rolled back. So a worker killed at any moment
leaves every version either untouched (a new object written but never published is unreadable, with
no data key, and is overwritten by the re-run) or fully rewritten and shredded (at worst its old
bytes are still in the store, without a key; the re-run deletes them). The consumer is idempotent: a
re-run skips the versions already rewritten and completes the rest, and a second delivery changes
nothing. The process's decrypted-frame cache is told after each version.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from access.audit.actions import Details, Identifier, register_action
from access.audit.service import Actor, record
from consent.decisions.models import Pseudonym
from consent.decisions.withdrawals import WithdrawalNotice, WithdrawalReason
from enclave.datasets.frames import PSEUDONYM, frames
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.objects.models import DataKey
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
        """Rewrite every version holding the subject's pseudonym without their rows.

        Each version is rewritten and committed in its own transaction, on the same database as
        ``session`` (whose own transaction only carries the delivery's confirmation).
        """
        if notice.subject_kind != "student":
            return  # datasets hold students' rows only
        query = select(Dataset.id, Dataset.domain).where(Dataset.destroyed_at.is_(None))
        if notice.reason is WithdrawalReason.withdrawn:
            query = query.where(Dataset.purpose.in_(notice.purposes))
        targets: list[tuple[str, str, list[int]]] = []
        for dataset_id, domain in session.execute(query.order_by(Dataset.id)).all():
            pseudonym = session.execute(
                select(Pseudonym.pseudonym).where(
                    Pseudonym.domain == domain, Pseudonym.subject_id == notice.subject_id
                )
            ).scalar_one_or_none()
            if pseudonym is None:
                continue
            published = session.execute(
                select(DatasetVersion.version)
                .where(
                    DatasetVersion.dataset_id == dataset_id,
                    DatasetVersion.state == VersionState.published.value,
                )
                .order_by(DatasetVersion.version)
            ).scalars()
            targets.append((dataset_id, pseudonym, list(published)))
        if not targets:
            return
        store = self.store_factory()
        sessions = _own_sessions(session)
        for dataset_id, pseudonym, versions in targets:
            for number in versions:
                with sessions() as own, own.begin():
                    leftovers = _leftovers(own, dataset_id, number, notice.effective_at)
                    shredded = _erase_from_version(
                        own, store, dataset_id=dataset_id, number=number, pseudonym=pseudonym, notice=notice
                    )
                # Committed: only now may the old bytes go (the key that opened them is gone already).
                for storage_key in sorted({*leftovers, *shredded}):
                    store.storage.delete(storage_key)
                if shredded:
                    frames.invalidate(dataset_id)


def _own_sessions(session: Session) -> sessionmaker[Session]:
    """Sessions on the database of ``session``, each committing on its own."""
    bind = session.get_bind()
    if isinstance(bind, Connection):
        # One connection shared with the caller (tests): each unit of work is a savepoint on it.
        return sessionmaker(bind=bind, join_transaction_mode="create_savepoint", expire_on_commit=False)
    return sessionmaker(bind=bind, expire_on_commit=False)


def _leftovers(session: Session, dataset_id: str, number: int, since: datetime) -> list[str]:
    """Stored objects of the version whose key was destroyed since ``since`` and no live key replaced.

    Their bytes are unreadable already; a worker killed between the commit and the deletion left them.
    """
    rows = session.execute(
        select(DataKey.storage_key, DataKey.destroyed_at).where(
            DataKey.dataset_id == dataset_id, DataKey.dataset_version == number
        )
    ).all()
    live = {key for key, destroyed in rows if destroyed is None}
    moment = since if since.tzinfo else since.replace(tzinfo=UTC)
    return [
        key
        for key, destroyed in rows
        if destroyed is not None
        and (destroyed if destroyed.tzinfo else destroyed.replace(tzinfo=UTC)) >= moment
        and key not in live
    ]


def _shred_key(session: Session, ctx: ObjectContext) -> list[str]:
    """Destroy the object's live data key in this transaction; the bytes are deleted after commit."""
    rows = (
        session.execute(
            select(DataKey)
            .where(DataKey.storage_key == ctx.storage_key, DataKey.destroyed_at.is_(None))
            .with_for_update()
        )
        .scalars()
        .all()
    )
    now = datetime.now(UTC)
    for row in rows:
        row.wrapped_key = ""
        row.kek_version = None
        row.destroyed_at = now
    return [row.id for row in rows]


def _erase_from_version(
    session: Session,
    store: EncryptedStore,
    *,
    dataset_id: str,
    number: int,
    pseudonym: str,
    notice: WithdrawalNotice,
) -> list[str]:
    """Rewrite one version without the subject (locked); returns the storage keys to delete after commit."""
    version = session.execute(
        select(DatasetVersion)
        .where(
            DatasetVersion.dataset_id == dataset_id,
            DatasetVersion.version == number,
            DatasetVersion.state == VersionState.published.value,
        )
        .with_for_update()
    ).scalar_one_or_none()
    if version is None:
        return []  # destroyed meanwhile
    destroyed: list[str] = []
    written: list[str] = []
    objects: list[str] = []
    to_delete: list[str] = []
    removed = 0
    for name in version.objects:
        ctx = ObjectContext(dataset_id, number, name)
        frame = pl.read_parquet(io.BytesIO(store.read_object(session, ctx)))
        kept = frame.filter(pl.col(PSEUDONYM) != pseudonym)
        if kept.height == frame.height:
            objects.append(name)
            continue
        removed += frame.height - kept.height
        buffer = io.BytesIO()
        kept.write_parquet(buffer, compression="zstd")
        new_name = _next_name(name)
        store.put_object(session, ObjectContext(dataset_id, number, new_name), [buffer.getvalue()])
        _shred_key(session, ctx)
        to_delete.append(ctx.storage_key)
        objects.append(new_name)
        written.append(new_name)
        destroyed.append(name)
    if not removed:
        return []
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
            dataset=dataset_id,
            version=number,
            rows_removed=removed,
            objects_destroyed=destroyed,
            objects_written=written,
        ),
    )
    log.info("enclave.subject_rows_erased", dataset=dataset_id, version=number, rows=removed)
    return to_delete


def _next_name(name: str) -> str:
    """``part-0000.parquet`` -> ``part-0000.e1.parquet`` -> ``part-0000.e2.parquet``."""
    stem, _, suffix = name.rpartition(".")
    base, dot, counter = stem.rpartition(".e")
    if dot and counter.isdigit():
        return f"{base}.e{int(counter) + 1}.{suffix}"
    return f"{stem}.e1.{suffix}"
