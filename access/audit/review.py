"""Review of the audit ledger by the DPO and the legal reviewer: filtered reads with keyset
pagination, verification, checkpoints and sign-offs of reviewed ranges.

Every function here that shows ledger content to a person records that it did (``audit.read``,
``audit.verified``…) in the caller's transaction: reading the audit trail is itself audited.
Exports live in :mod:`access.audit.review_export`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Select, func, select
from sqlalchemy.orm import Session

from access.audit import merkle
from access.audit.actions import (
    AUDIT_READ,
    AUDIT_VERIFIED,
    Details,
    Outcome,
    Role,
    Sha256Hex,
    register_action,
)
from access.audit.exceptions import InvalidCheckpoint
from access.audit.models import AuditEntry, AuditSignoff
from access.audit.service import (
    SIGNING_KEY,
    SignedCheckpoint,
    VerificationReport,
    chain_queued,
    create_checkpoint,
    head,
    latest_checkpoint,
    prove_consistency,
    record,
    verify_ledger,
)
from access.principal import Principal
from infra.errors import BadRequest, NotFound
from infra.keys import KeyBackend

MAX_PAGE = 500
DEFAULT_PAGE = 100
MAX_COMMENT = 2000


class SignoffDetails(Details):
    """A reviewed range signed off against a signed tree root (the comment stays in its table)."""

    first_seq: int
    last_seq: int
    tree_size: int
    root_hash: Sha256Hex


AUDIT_RANGE_SIGNED_OFF = register_action("audit.range_signed_off", SignoffDetails)


class InvalidFilter(BadRequest):
    """A filter of the ledger contradicts itself (e.g. from after to)."""

    type_slug = "audit-invalid-filter"
    title = "Invalid audit filter"


class InvalidCursor(BadRequest):
    """A pagination cursor was not produced by this server for these filters."""

    type_slug = "audit-invalid-cursor"
    title = "Invalid pagination cursor"


class InvalidRange(BadRequest):
    """A range to sign off is empty or reaches past the newest entry."""

    type_slug = "audit-invalid-range"
    title = "Invalid range"


# --- filters -----------------------------------------------------------------------------------


def _utc(moment: datetime | None) -> datetime | None:
    # Naive times from forms (datetime-local) are read as UTC, the ledger's own time zone.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class EntryFilter:
    """What a reviewer narrows the ledger to; ``since`` is inclusive and ``until`` exclusive."""

    actor_id: str | None = None
    role: Role | None = None
    action: str | None = None
    target_id: str | None = None
    project_id: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None
    first_seq: int | None = None
    last_seq: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "since", _utc(self.since))
        object.__setattr__(self, "until", _utc(self.until))
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidFilter("the start of the time range is after its end")
        if self.first_seq is not None and self.first_seq < 1:
            raise InvalidFilter("sequence numbers start at 1")
        if self.first_seq is not None and self.last_seq is not None and self.first_seq > self.last_seq:
            raise InvalidFilter("first_seq is after last_seq")

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions selecting the matching entries."""
        conditions: list[ColumnElement[bool]] = []
        equal: list[tuple[Any, str | None]] = [
            (AuditEntry.actor_id, self.actor_id),
            (AuditEntry.actor_role, self.role.value if self.role else None),
            (AuditEntry.action, self.action),
            (AuditEntry.target_id, self.target_id),
            (AuditEntry.project_id, self.project_id),
            (AuditEntry.outcome, self.outcome.value if self.outcome else None),
        ]
        conditions.extend(column == value for column, value in equal if value)
        if self.since is not None:
            conditions.append(AuditEntry.occurred_at >= self.since)
        if self.until is not None:
            conditions.append(AuditEntry.occurred_at < self.until)
        if self.first_seq is not None:
            conditions.append(AuditEntry.seq >= self.first_seq)
        if self.last_seq is not None:
            conditions.append(AuditEntry.seq <= self.last_seq)
        return conditions

    def as_json(self) -> dict[str, Any]:
        """The filters that are set, as JSON values (for exports and cursors)."""
        values: dict[str, Any] = {}
        for name, value in vars(self).items():
            if value is None or value == "":
                continue
            if isinstance(value, datetime):
                values[name] = value.isoformat()
            else:
                values[name] = value if isinstance(value, int) else str(value)
        return values

    def fingerprint(self) -> str:
        """A short digest binding a cursor to the filters it was issued for."""
        return hashlib.sha256(orjson.dumps(self.as_json(), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def filtered(filters: EntryFilter, upto: int) -> Select[Any]:
    """Entries matching ``filters`` among the first ``upto``, oldest first."""
    return select(AuditEntry).where(*filters.conditions(), AuditEntry.seq <= upto).order_by(AuditEntry.seq)


# --- cursor pagination -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts, and the ledger size the first page saw.

    Pinning that size keeps a paginated read a stable snapshot: entries appended meanwhile
    (including this read's own ``audit.read`` entries) never shift or extend the pages.
    """

    after: int
    upto: int
    fingerprint: str

    def encode(self) -> str:
        """Opaque, URL-safe text."""
        raw = orjson.dumps({"a": self.after, "u": self.upto, "f": self.fingerprint})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, filters: EntryFilter) -> Cursor:
        """Parse a cursor; InvalidCursor when it is malformed or was issued for other filters."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = orjson.loads(raw)
            cursor = cls(after=int(data["a"]), upto=int(data["u"]), fingerprint=str(data["f"]))
        except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
            raise InvalidCursor("the cursor is not one this server issued") from None
        if cursor.after < 0 or cursor.upto < cursor.after:
            raise InvalidCursor("the cursor is not one this server issued")
        if cursor.fingerprint != filters.fingerprint():
            raise InvalidCursor("the cursor belongs to other filters: start again from the first page")
        return cursor


@dataclass(frozen=True)
class EntryPage:
    """One page of entries and the cursor of the next one (None on the last page)."""

    entries: Sequence[AuditEntry]
    next_cursor: str | None
    ledger_size: int


def list_entries(
    session: Session,
    principal: Principal,
    filters: EntryFilter,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> EntryPage:
    """One page of matching entries, oldest first; records the read in the ledger."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidFilter(f"limit must be between 1 and {MAX_PAGE}")
    chain_queued(session)
    if cursor:
        position = Cursor.decode(cursor, filters)
    else:
        position = Cursor(after=0, upto=head(session)[0], fingerprint=filters.fingerprint())
    query = filtered(filters, position.upto).where(AuditEntry.seq > position.after).limit(limit + 1)
    rows: list[AuditEntry] = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        Cursor(rows[-1].seq, position.upto, position.fingerprint).encode() if more and rows else None
    )
    record(
        session,
        principal.actor,
        AUDIT_READ,
        target_type="audit_entry",
        details={
            "entries": len(rows),
            "first_seq": rows[0].seq if rows else None,
            "last_seq": rows[-1].seq if rows else None,
        },
    )
    return EntryPage(entries=rows, next_cursor=next_cursor, ledger_size=position.upto)


def summarise(connection: Connection, filters: EntryFilter, upto: int) -> tuple[int, int | None, int | None]:
    """Number, first and last sequence number of the matching entries among the first ``upto``."""
    row = connection.execute(
        select(func.count(), func.min(AuditEntry.seq), func.max(AuditEntry.seq)).where(
            *filters.conditions(), AuditEntry.seq <= upto
        )
    ).one()
    return int(row[0]), row[1], row[2]


# --- checkpoints and verification --------------------------------------------------------------


def read_latest_checkpoint(session: Session, principal: Principal) -> SignedCheckpoint:
    """The newest signed checkpoint, for a reviewer to save; records the read."""
    row = latest_checkpoint(session)
    if row is None:
        raise NotFound("no checkpoint has been signed yet")
    record(
        session,
        principal.actor,
        AUDIT_READ,
        target_type="audit_checkpoint",
        target_id=str(row.id),
        details={"entries": 0},
    )
    return SignedCheckpoint.from_row(row)


def sign_checkpoint(session: Session, keys: KeyBackend) -> SignedCheckpoint:
    """Sign the ledger as it is now (returns the newest checkpoint when nothing was added since)."""
    return SignedCheckpoint.from_row(create_checkpoint(session, keys))


@dataclass(frozen=True)
class Consistency:
    """Proof that the ledger now extends a reviewer's saved checkpoint."""

    from_size: int
    to_size: int
    to_root: str
    proof: list[str]
    ok: bool


@dataclass(frozen=True)
class ReviewVerification:
    """A verification report, plus the append-only proof when a saved checkpoint was given."""

    report: VerificationReport
    consistency: Consistency | None = None


def verify(
    session: Session,
    principal: Principal,
    keys: KeyBackend,
    saved: SignedCheckpoint | None = None,
) -> ReviewVerification:
    """Recompute the whole ledger (and, given a saved checkpoint, prove it was only appended to)."""
    chain_queued(session)
    connection = session.connection()
    report = verify_ledger(connection, keys.public_keys(SIGNING_KEY), saved)
    consistency = None
    if saved is not None:
        consistency = _consistency(connection, saved, report)
    ok = report.ok and (consistency is None or consistency.ok)
    record(
        session,
        principal.actor,
        AUDIT_VERIFIED,
        target_type="audit_ledger",
        details={"entries": report.entries, "ok": ok, "first_bad_seq": report.first_bad_seq},
    )
    return ReviewVerification(report=report, consistency=consistency)


def _consistency(connection: Connection, saved: SignedCheckpoint, report: VerificationReport) -> Consistency:
    size, root = report.entries, report.root_hash
    if saved.tree_size > size:
        return Consistency(saved.tree_size, size, root, [], ok=False)
    if saved.tree_size == 0:
        # Every ledger extends the empty one.
        return Consistency(0, size, root, [], ok=saved.root_hash == merkle.EMPTY_ROOT.hex())
    try:
        proof = prove_consistency(connection, saved.tree_size, size)
    except InvalidCheckpoint:
        return Consistency(saved.tree_size, size, root, [], ok=False)
    ok = merkle.verify_consistency(
        saved.tree_size,
        size,
        [bytes.fromhex(p) for p in proof],
        bytes.fromhex(saved.root_hash),
        bytes.fromhex(root),
    )
    return Consistency(saved.tree_size, size, root, proof, ok=ok)


# --- sign-offs ---------------------------------------------------------------------------------


def sign_off(
    session: Session,
    principal: Principal,
    keys: KeyBackend,
    *,
    first_seq: int,
    last_seq: int,
    comment: str = "",
) -> AuditSignoff:
    """Record that the reviewer reviewed entries first_seq..last_seq, against a signed root."""
    if len(comment) > MAX_COMMENT:
        raise InvalidRange(f"the comment is longer than {MAX_COMMENT} characters")
    size = head(session)[0]
    if not 1 <= first_seq <= last_seq:
        raise InvalidRange("the range must start at 1 or later and not end before it starts")
    if last_seq > size:
        raise InvalidRange(f"the ledger holds {size} entries: the range cannot end at {last_seq}")
    checkpoint = latest_checkpoint(session)
    if checkpoint is None or checkpoint.tree_size < last_seq:
        # The range must be covered by a signed root, or the sign-off would prove nothing.
        checkpoint = create_checkpoint(session, keys)
    signoff = AuditSignoff(
        reviewer_id=principal.account_id,
        reviewer_role=principal.actor.role.value,
        first_seq=first_seq,
        last_seq=last_seq,
        tree_size=checkpoint.tree_size,
        root_hash=checkpoint.root_hash,
        comment=comment,
        signed_at=datetime.now(UTC),
    )
    session.add(signoff)
    session.flush()
    record(
        session,
        principal.actor,
        AUDIT_RANGE_SIGNED_OFF,
        target_type="audit_signoff",
        target_id=str(signoff.id),
        details={
            "first_seq": first_seq,
            "last_seq": last_seq,
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash,
        },
    )
    return signoff


def list_signoffs(session: Session, principal: Principal, *, limit: int = MAX_PAGE) -> list[AuditSignoff]:
    """Sign-offs, newest first; records the read."""
    rows = list(session.scalars(select(AuditSignoff).order_by(AuditSignoff.id.desc()).limit(limit)))
    record(
        session,
        principal.actor,
        AUDIT_READ,
        target_type="audit_signoff",
        details={"entries": len(rows)},
    )
    return rows
