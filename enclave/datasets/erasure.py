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

**Quarantine reports.** A version's quarantine report (``quarantine.csv``: the bad rows of an upload
as they were uploaded, pupil reference and school included) may hold the subject's row even when no
row of theirs was stored. Every report of the datasets concerned is read, in the same transaction as
its version, and if it holds a row of the subject it is rewritten without it into a new object with
a new data key (or, if nothing else is left, dropped), the old report's key destroyed and its bytes
deleted after commit, exactly as for the Parquet parts. The rows are recognised by the upload's
subject-id and school columns (as the version's schema declares them):

* while the student's identity is on the roster (a withdrawal, a restriction), by their pupil
  reference (decrypted) and school: their rows only;
* once the identity was erased (an erasure request empties it before the event is delivered), the
  reference is known no more, so every row of the student's school whose reference finds no student
  on the roster goes: the erased student's rows are among them (their blind index was replaced),
  and so are rows of references the roster never held, which the steward has to fix in any case.

The ledger's proof (``enclave.quarantine_rows_erased``) names the report destroyed and written, the
number of rows removed and how they were matched, never the subject.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import polars as pl
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from access.audit.actions import Details, Identifier, register_action
from access.audit.service import Actor, record
from consent.decisions.models import Pseudonym
from consent.decisions.withdrawals import WithdrawalNotice, WithdrawalReason
from consent.identity import IdentityField, IdentityProtector
from consent.rosters.models import Student
from enclave.datasets.frames import PSEUDONYM, frames
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.objects.models import DataKey
from enclave.objects.store import EncryptedStore, ObjectContext
from infra.db import in_values
from infra.keys import KeyBackend
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


class QuarantineMatch(StrEnum):
    """How the subject's rows were recognised in a quarantine report."""

    reference = "reference"
    """By the student's pupil reference and school: their rows only."""
    unmatched_in_school = "unmatched_in_school"
    """Identity erased already: every row of the student's school that finds no student on the roster."""


class QuarantineErasedDetails(Details):
    """Ledger proof of a quarantine report rewritten without the subject: no subject, only what changed."""

    withdrawal_event: Identifier
    dataset: Identifier
    version: int
    rows_removed: int
    matched_by: QuarantineMatch
    report_destroyed: Identifier
    report_written: Identifier | None = None
    """The new report, or none when no other row was left."""


QUARANTINE_ERASED = register_action("enclave.quarantine_rows_erased", QuarantineErasedDetails)


@dataclass(frozen=True)
class _Subject:
    """What recognises the student's rows in a quarantine report."""

    country: str
    school: str
    ref: str
    """The pupil reference, or empty once the identity was erased."""

    @property
    def match(self) -> QuarantineMatch:
        return QuarantineMatch.reference if self.ref else QuarantineMatch.unmatched_in_school


@dataclass
class DatasetErasure:
    """Removes a withdrawn subject's rows from the stored datasets and their quarantine reports."""

    store_factory: Callable[[], EncryptedStore]
    name: str = CONSUMER_NAME
    identity: Callable[[KeyBackend], IdentityProtector] = IdentityProtector
    """The roster's identity protector, given the store's key backend (it decrypts the reference)."""

    def handle(self, session: Session, notice: WithdrawalNotice) -> None:
        """Rewrite every version holding the subject's pseudonym without their rows, and every
        quarantine report of the datasets concerned holding a row of theirs.

        Each version is rewritten and committed in its own transaction, on the same database as
        ``session`` (whose own transaction only carries the delivery's confirmation).
        """
        if notice.subject_kind != "student":
            return  # datasets hold students' rows only
        query = select(Dataset.id, Dataset.domain).where(Dataset.destroyed_at.is_(None))
        if notice.reason is WithdrawalReason.withdrawn:
            query = query.where(Dataset.purpose.in_(notice.purposes))
        # Dataset, version, the pseudonym to remove (if the version may hold it), and whether the
        # version has a quarantine report.
        targets: list[tuple[str, int, str | None, bool]] = []
        for dataset_id, domain in session.execute(query.order_by(Dataset.id)).all():
            pseudonym = session.execute(
                select(Pseudonym.pseudonym).where(
                    Pseudonym.domain == domain, Pseudonym.subject_id == notice.subject_id
                )
            ).scalar_one_or_none()
            published: set[int] = (
                set()
                if pseudonym is None
                else set(
                    session.execute(
                        select(DatasetVersion.version).where(
                            DatasetVersion.dataset_id == dataset_id,
                            DatasetVersion.state == VersionState.published.value,
                        )
                    ).scalars()
                )
            )
            reported = set(
                session.execute(
                    select(DatasetVersion.version).where(
                        DatasetVersion.dataset_id == dataset_id,
                        DatasetVersion.state == VersionState.published.value,
                        DatasetVersion.quarantine_object.is_not(None),
                    )
                ).scalars()
            )
            for number in sorted(published | reported):
                targets.append(
                    (dataset_id, number, pseudonym if number in published else None, number in reported)
                )
        if not targets:
            return
        store = self.store_factory()
        protector = self.identity(store.keys)
        subject = _subject(session, protector, notice.subject_id) if any(t[3] for t in targets) else None
        sessions = _own_sessions(session)
        for dataset_id, number, pseudonym, has_report in targets:
            with sessions() as own, own.begin():
                leftovers = _leftovers(own, dataset_id, number, notice.effective_at)
                shredded = (
                    []
                    if pseudonym is None
                    else _erase_from_version(
                        own, store, dataset_id=dataset_id, number=number, pseudonym=pseudonym, notice=notice
                    )
                )
                reports = (
                    _erase_from_quarantine(
                        own, store, protector, subject, dataset_id=dataset_id, number=number, notice=notice
                    )
                    if has_report and subject is not None
                    else []
                )
            # Committed: only now may the old bytes go (the key that opened them is gone already).
            for storage_key in sorted({*leftovers, *shredded, *reports}):
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


def _locked_version(session: Session, dataset_id: str, number: int) -> DatasetVersion | None:
    """The published version, locked for this transaction (None once destroyed)."""
    return session.execute(
        select(DatasetVersion)
        .where(
            DatasetVersion.dataset_id == dataset_id,
            DatasetVersion.version == number,
            DatasetVersion.state == VersionState.published.value,
        )
        .with_for_update()
    ).scalar_one_or_none()


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
    version = _locked_version(session, dataset_id, number)
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


def _subject(session: Session, protector: IdentityProtector, subject_id: str) -> _Subject | None:
    """The student's country, school and pupil reference (empty once erased); none if not on a roster."""
    student = session.execute(select(Student).where(Student.subject_id == subject_id)).scalar_one_or_none()
    if student is None:
        return None
    ref = protector.decrypt(session, IdentityField.student_ref, student.ref_ciphertext)
    return _Subject(student.country_code, student.school_code, ref.strip())


def _subject_rows(
    session: Session,
    protector: IdentityProtector,
    subject: _Subject,
    report: pl.DataFrame,
    *,
    subject_column: str,
    school_column: str,
) -> pl.Series:
    """Which lines of a quarantine report are the subject's (see the module's documentation)."""
    if subject_column not in report.columns or school_column not in report.columns:
        return pl.Series([False] * report.height, dtype=pl.Boolean)
    refs = report[subject_column].cast(pl.String).fill_null("").str.strip_chars()
    schools = report[school_column].cast(pl.String).fill_null("").str.strip_chars()
    in_school = (schools == subject.school) & (refs != "")
    if subject.ref:
        return in_school & (refs == subject.ref)
    candidates = sorted(set(refs.filter(in_school).to_list()))
    if not candidates:
        return in_school
    indexes = protector.blind_indexes(
        session,
        IdentityField.student_ref,
        [f"{subject.country}/{subject.school}/{ref}" for ref in candidates],
    )
    found = set(
        session.execute(
            select(Student.ref_index).where(
                in_values(session, Student.ref_index, indexes), Student.erased_at.is_(None)
            )
        ).scalars()
    )
    unmatched = [ref for ref, index in zip(candidates, indexes, strict=True) if index not in found]
    return in_school & refs.is_in(unmatched)


def _erase_from_quarantine(
    session: Session,
    store: EncryptedStore,
    protector: IdentityProtector,
    subject: _Subject,
    *,
    dataset_id: str,
    number: int,
    notice: WithdrawalNotice,
) -> list[str]:
    """Rewrite one version's quarantine report without the subject's rows (version locked); returns
    the storage key to delete after commit."""
    version = _locked_version(session, dataset_id, number)
    if version is None or not version.quarantine_object:
        return []  # purged or destroyed meanwhile
    name = version.quarantine_object
    ctx = ObjectContext(dataset_id, number, name)
    report = pl.read_csv(io.BytesIO(store.read_object(session, ctx)), infer_schema=False)
    mine = _subject_rows(
        session,
        protector,
        subject,
        report,
        subject_column=str(version.schema["subject_id_column"]),
        school_column=str(version.schema["school_column"]),
    )
    if not mine.any():
        return []
    lines = report.filter(mine)
    removed = lines["row"].n_unique() if "row" in lines.columns else lines.height
    kept = report.filter(~mine)
    written = None
    if kept.height:
        written = _next_name(name)
        store.put_object(session, ObjectContext(dataset_id, number, written), [kept.write_csv().encode()])
    _shred_key(session, ctx)
    version.quarantine_object = written
    session.flush()
    record(
        session,
        Actor.system(),
        QUARANTINE_ERASED,
        target_type="withdrawal",
        target_id=notice.event_id,
        details=QuarantineErasedDetails(
            withdrawal_event=notice.event_id,
            dataset=dataset_id,
            version=number,
            rows_removed=removed,
            matched_by=subject.match,
            report_destroyed=name,
            report_written=written,
        ),
    )
    log.info("enclave.quarantine_rows_erased", dataset=dataset_id, version=number, rows=removed)
    return [ctx.storage_key]


def _next_name(name: str) -> str:
    """``part-0000.parquet`` -> ``part-0000.e1.parquet`` -> ``part-0000.e2.parquet`` (and
    ``quarantine.csv`` -> ``quarantine.e1.csv``)."""
    stem, _, suffix = name.rpartition(".")
    base, dot, counter = stem.rpartition(".e")
    if dot and counter.isdigit():
        return f"{base}.e{int(counter) + 1}.{suffix}"
    return f"{stem}.e1.{suffix}"
