"""Recording, checkpointing and verifying the audit ledger.

Use :func:`record` inside the transaction of the change it describes: both commit or neither does.
If that transaction rolls back, a ``failed`` entry for the same action is written afterwards in a
transaction of its own, and :func:`record_denied` entries are written whatever happens to the
request — so every attempt leaves a trace.

Recording queues the entry in the caller's transaction with no global lock; right after that
transaction commits, :func:`seal` chains every queued entry under the single chain lock, many
entries per sealing transaction (in the background, see ``access.audit.sealer``). Sealers run one
after another, so the chain stays linear with no gap and no fork, and a slow request never holds up
every other audited write.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

import orjson
from sqlalchemy import Connection, Table, Text, cast, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction

from access.audit import canonical
from access.audit.actions import (
    AUDIT_CHECKPOINT_SIGNED,
    AUDIT_RETENTION_APPLIED,
    Details,
    Outcome,
    Role,
    validate_details,
)
from access.audit.exceptions import InvalidCheckpoint
from access.audit.merkle import RootBuilder, consistency_proof, inclusion_proof
from access.audit.models import GENESIS_HASH, AuditCheckpoint, AuditEntry, AuditHead, AuditPending
from access.audit.sealer import sealer_for
from infra.db import is_postgresql
from infra.keys import KeyBackend, verify_signature
from infra.logging import get_logger, request_id_var

log = get_logger(__name__)

LOG_ID = "letscare-enclave-audit"
SIGNING_KEY = "audit-checkpoint"
_ATTEMPTS = "audit_attempts"
_INDEPENDENT = "audit_independent"
_QUEUED = "audit_queued"
_BUFFER = "audit_buffer"
_STREAM = {"stream_results": True, "yield_per": 20_000}


@dataclass(frozen=True)
class Actor:
    """Who acts: an account id, a subject pseudonym, or the system. Never a name or an email."""

    id: str
    role: Role

    @classmethod
    def system(cls) -> Actor:
        """The enclave itself (scheduled jobs, workers)."""
        return cls("system", Role.system)


@dataclass(frozen=True)
class _Pending:
    actor: Actor
    action: str
    target_type: str | None
    target_id: str | None
    outcome: Outcome
    details: dict[str, Any]
    project_id: str | None
    request_id: str | None


def _now() -> datetime:
    """The clock entries are stamped with (one place, so tests can move it)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class RecordedEntry:
    """What ``record`` returns: the entry's time. Its sequence number is given when it is sealed."""

    occurred_at: datetime


def _pending(
    *,
    actor: Actor,
    action: str,
    target_type: str | None,
    target_id: str | None,
    outcome: Outcome,
    details: dict[str, Any] | Details | None,
    project_id: str | None,
    request_id: str | None,
) -> _Pending:
    return _Pending(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        details=validate_details(action, outcome, details),
        project_id=project_id,
        request_id=request_id if request_id is not None else request_id_var.get(),
    )


# Core statements built once: the append path runs for every audited request, and ORM statement
# building costs several times more than the round trips themselves.
_PENDING_NAMES = (
    "occurred_at",
    "actor_id",
    "actor_role",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "request_id",
    "project_id",
    "details",
)
_PENDING: Table = AuditPending.__table__  # type: ignore[assignment]
_ENTRY: Table = AuditEntry.__table__  # type: ignore[assignment]
_HEAD: Table = AuditHead.__table__  # type: ignore[assignment]
_INSERT_PENDING_MANY = insert(_PENDING)
_LOCK_HEAD = (
    update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq).returning(_HEAD.c.seq, _HEAD.c.entry_hash)
)
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.entry_hash).where(_HEAD.c.id == 1)
# One fixed key for "the audit chain" (the ASCII of "AUDITLOG"); any process that appends takes it.
_AUDIT_LOCK_KEY = 0x4155444954204C47
_ADVISORY_LOCK = select(func.pg_advisory_xact_lock(_AUDIT_LOCK_KEY))
_TRY_ADVISORY_LOCK = select(func.pg_try_advisory_xact_lock(_AUDIT_LOCK_KEY))
_READ_PENDING = select(_PENDING.c.id, *(_PENDING.c[name] for name in _PENDING_NAMES)).order_by(_PENDING.c.id)
_INSERT_ENTRIES = insert(_ENTRY)
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1)


def _row(pending: _Pending) -> dict[str, Any]:
    return {
        "occurred_at": _now(),
        "actor_id": pending.actor.id,
        "actor_role": pending.actor.role.value,
        "action": pending.action,
        "target_type": pending.target_type,
        "target_id": pending.target_id,
        "outcome": pending.outcome.value,
        "request_id": pending.request_id,
        "project_id": pending.project_id,
        "details": pending.details,
    }


def write_queued(session: Session) -> None:
    """Insert the entries recorded in this transaction into the queue table (done at commit).

    Entries are held by the session until then, so a request that records several entries writes
    them in one statement.
    """
    rows = session.info.pop(_BUFFER, None)
    if rows:
        session.connection().execute(_INSERT_PENDING_MANY, rows)


SEAL_BATCH = 5000


def seal(session: Session, *, locked: bool = False) -> int:
    """Chain every pending entry this transaction can see, in queue order; return how many.

    ``locked`` says the caller already holds the PostgreSQL lock. Sealers take one lock before
    they read the chain head: on PostgreSQL a transaction-level
    advisory lock (it writes nothing, so a pass that finds nothing to do costs no commit flush), on
    SQLite the database write lock taken by a no-op update of the head row. So two sealers run one
    after the other, each continuing from the head the previous one committed, and the chain stays
    linear with no gap and no fork. A sealer keeps going while entries keep arriving, so
    concurrent writers share its commit instead of each waiting for their own.
    """
    write_queued(session)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        if not locked:
            connection.execute(_ADVISORY_LOCK)
        seq, prev_hash = connection.execute(_READ_HEAD).one()
    else:
        seq, prev_hash = connection.execute(_LOCK_HEAD).one()
    start = seq
    while rows := connection.execute(_READ_PENDING.limit(SEAL_BATCH)).all():
        entries = []
        for row in rows:
            seq += 1
            values = dict(zip(_PENDING_NAMES, row[1:], strict=True))
            document = canonical.entry_document(seq=seq, prev_hash=prev_hash, **values)
            entry_hash = canonical.entry_hash(document)
            entries.append({**values, "seq": seq, "prev_hash": prev_hash, "entry_hash": entry_hash})
            prev_hash = entry_hash
        connection.execute(_INSERT_ENTRIES, entries)
        connection.execute(delete(_PENDING).where(_PENDING.c.id.in_([row[0] for row in rows])))
    if seq != start:
        connection.execute(_MOVE_HEAD.values(seq=seq, entry_hash=prev_hash))
    return int(seq - start)


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | Details | None = None,
    project_id: str | None = None,
    outcome: Outcome = Outcome.ok,
    request_id: str | None = None,
) -> RecordedEntry:
    """Record an action inside the caller's transaction; it commits or rolls back with the change.

    The entry is queued in the transaction and chained right after it commits (and by the
    periodic ``audit.seal`` job should that process die first).
    """
    pending = _pending(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        details=details,
        project_id=project_id,
        request_id=request_id,
    )
    install_audit_hooks()
    if not session.in_transaction():
        session.begin()
    row = _row(pending)
    session.info.setdefault(_BUFFER, []).append(row)
    session.info.setdefault(_ATTEMPTS, []).append(pending)
    session.info[_QUEUED] = True
    return RecordedEntry(occurred_at=row["occurred_at"])


def record_denied(
    session: Session,
    actor: Actor,
    action: str,
    *,
    error: str,
    target_type: str | None = None,
    target_id: str | None = None,
    project_id: str | None = None,
    outcome: Outcome = Outcome.denied,
) -> None:
    """Record a refused (or failed) attempt in its own transaction, once the caller's one ends."""
    pending = _pending(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        details={"error": error},
        project_id=project_id,
        request_id=None,
    )
    install_audit_hooks()
    if not session.in_transaction():
        # The hooks that write the entry fire when a transaction ends; make sure there is one.
        session.begin()
    session.info.setdefault(_INDEPENDENT, []).append(pending)


def _after_end(session: Session, independent: list[_Pending], queued: bool) -> None:
    """Write independent entries, then have the queued entries chained.

    The finished session may not run SQL inside its own hook, hence a fresh one on the same bind.
    With an engine, the process's background sealer chains the entries within milliseconds
    (``access.audit.sealer``). A session bound to a caller's connection (a test's transaction, a
    migration) holds entries no other connection can see yet, so they are chained right here.
    """
    if not independent and not queued:
        return
    bind = session.get_bind()
    with Session(bind=bind, join_transaction_mode="create_savepoint") as fresh:
        if independent:
            fresh.connection().execute(_INSERT_PENDING_MANY, [_row(p) for p in independent])
        if isinstance(bind, Engine):
            if independent:
                fresh.commit()
            sealer_for(bind).wake()
            return
        if seal(fresh) or independent:
            fresh.commit()
        else:
            fresh.rollback()


def chain_queued(session: Session) -> None:
    """Before reading the ledger: chain the entries this process queued that still wait.

    Entries of other processes are chained by their own sealers within milliseconds; a session on
    a caller's connection chains its entries at commit and needs nothing here.
    """
    bind = session.get_bind()
    if isinstance(bind, Engine):
        sealer_for(bind).flush()


def try_seal(session: Session, *, wait: bool) -> int | None:
    """Seal as :func:`seal`; without ``wait``, None when another process holds the chain lock."""
    if not wait and is_postgresql(session):
        if not session.connection().execute(_TRY_ADVISORY_LOCK).scalar():
            return None
        return seal(session, locked=True)
    return seal(session)


def _after_commit(session: Session) -> None:
    session.info.pop(_ATTEMPTS, None)
    queued = bool(session.info.pop(_QUEUED, False))
    independent = session.info.pop(_INDEPENDENT, [])
    try:
        _after_end(session, independent, queued)
    except Exception:
        # The change and its entry are committed; the entry waits in the queue for the next
        # sealing pass (at the latest the periodic one).
        log.exception("audit.seal_deferred", independent=len(independent))
        if independent:
            raise


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # Fires for every outermost transaction, even one that never reached the database (a denied
    # request often fails before any SQL); after a commit ``_after_commit`` has already emptied
    # the lists, so whatever is left here belongs to a transaction that did not commit.
    if transaction.parent is not None:
        return
    session.info.pop(_QUEUED, None)
    session.info.pop(_BUFFER, None)
    if not session.info.get(_ATTEMPTS) and not session.info.get(_INDEPENDENT):
        return
    attempts: list[_Pending] = session.info.pop(_ATTEMPTS, [])
    failed = [
        _Pending(
            actor=p.actor,
            action=p.action,
            target_type=p.target_type,
            target_id=p.target_id,
            outcome=Outcome.failed,
            details={"error": "rolled_back"},
            project_id=p.project_id,
            request_id=p.request_id,
        )
        for p in attempts
        if p.outcome is Outcome.ok
    ]
    independent = session.info.pop(_INDEPENDENT, [])
    try:
        _after_end(session, [*failed, *independent], False)
    except Exception:
        log.exception("audit.failure_record_lost", entries=len(failed) + len(independent))
        raise


_hooks_installed = False


def install_audit_hooks() -> None:
    """Seal entries after commits, and write failed and denied entries (idempotent).

    ``record`` and ``record_denied`` call it, so no caller can forget it.
    """
    global _hooks_installed  # noqa: PLW0603 - one process-wide switch
    if _hooks_installed:
        return
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "before_commit", write_queued)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_transaction_end", _after_transaction_end)
    _hooks_installed = True


# --- checkpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as handed to reviewers (and read back from their saved file)."""

    tree_size: int
    root_hash: str
    signed_at: datetime
    key_id: str
    signature: str
    log: str = LOG_ID

    def payload(self) -> bytes:
        """The bytes that were signed."""
        return checkpoint_payload(self.tree_size, self.root_hash, self.signed_at)

    def to_json(self) -> dict[str, Any]:
        """The reviewer's file format."""
        return {
            "log": self.log,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "signed_at": canonical.format_time(self.signed_at),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedCheckpoint:
        """Parse a reviewer's saved checkpoint; InvalidCheckpoint names what is wrong."""
        if not isinstance(data, dict):
            raise InvalidCheckpoint("a checkpoint is a JSON object")
        try:
            checkpoint = cls(
                tree_size=int(data["tree_size"]),
                root_hash=str(data["root_hash"]),
                signed_at=datetime.strptime(str(data["signed_at"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=UTC
                ),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
                log=str(data.get("log", LOG_ID)),
            )
        except KeyError as exc:
            raise InvalidCheckpoint(f"checkpoint lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidCheckpoint(f"checkpoint field has a wrong value: {exc}") from None
        if checkpoint.tree_size < 0 or len(checkpoint.root_hash) != 64:
            raise InvalidCheckpoint("checkpoint tree_size or root_hash is malformed")
        return checkpoint

    @classmethod
    def from_row(cls, row: AuditCheckpoint) -> SignedCheckpoint:
        """From the stored row."""
        return cls(row.tree_size, row.root_hash, _aware(row.signed_at), row.key_id, row.signature)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def checkpoint_payload(tree_size: int, root_hash: str, signed_at: datetime) -> bytes:
    """Canonical bytes of a checkpoint statement."""
    return canonical.canonical_bytes(
        {
            "log": LOG_ID,
            "tree_size": tree_size,
            "root_hash": root_hash,
            "time": canonical.format_time(signed_at),
        }
    )


def checkpoint_signature_valid(checkpoint: SignedCheckpoint, public_keys: dict[str, bytes]) -> bool:
    """True when the checkpoint is signed by one of the ledger's keys."""
    public_key = public_keys.get(checkpoint.key_id)
    if public_key is None or checkpoint.log != LOG_ID:
        return False
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except ValueError:
        return False
    return verify_signature(public_key, checkpoint.payload(), signature)


def _stream_hashes(connection: Connection, after: int, upto: int) -> Iterator[tuple[int, str]]:
    query = (
        select(AuditEntry.seq, AuditEntry.entry_hash)
        .where(AuditEntry.seq > after, AuditEntry.seq <= upto)
        .order_by(AuditEntry.seq)
    )
    # Per-statement options: Connection.execution_options() would change the caller's connection.
    result = connection.execute(query, execution_options=_STREAM)
    for row in result:
        yield int(row[0]), str(row[1])


def head(session: Session) -> tuple[int, str]:
    """Sequence number and hash of the newest committed entry."""
    row = session.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).one()
    return int(row[0]), str(row[1])


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """The checkpoint covering the most entries."""
    return session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc(), AuditCheckpoint.id.desc()).limit(1)
    ).first()


def create_checkpoint(session: Session, keys: KeyBackend) -> AuditCheckpoint:
    """Sign the current tree size and root (continuing from the last checkpoint's frontier)."""
    chain_queued(session)
    seal(session)
    size, _ = head(session)
    last = latest_checkpoint(session)
    if last is not None and last.tree_size == size:
        return last
    if last is not None:
        builder = RootBuilder.resume(last.tree_size, [bytes.fromhex(h) for h in last.frontier])
    else:
        builder = RootBuilder()
    for _, digest in _stream_hashes(session.connection(), builder.size, size):
        builder.append(canonical.entry_leaf(digest))
    if builder.size != size:
        raise RuntimeError(
            f"ledger has {builder.size} entries up to the head at {size}: run `enclave audit verify`"
        )
    root = builder.root().hex()
    signed_at = datetime.now(UTC)
    signature = keys.sign(SIGNING_KEY, checkpoint_payload(size, root, signed_at))
    checkpoint = AuditCheckpoint(
        tree_size=size,
        root_hash=root,
        signed_at=signed_at,
        key_id=signature.key_id,
        signature=base64.b64encode(signature.signature).decode(),
        frontier=[h.hex() for h in builder.frontier],
    )
    session.add(checkpoint)
    session.flush()
    record(
        session,
        Actor.system(),
        AUDIT_CHECKPOINT_SIGNED,
        target_type="audit_checkpoint",
        target_id=str(checkpoint.id),
        details={"tree_size": size, "root_hash": root, "key_id": signature.key_id},
    )
    return checkpoint


# --- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionResult:
    """What a retention run emptied."""

    pruned: int
    first_seq: int | None
    last_seq: int | None


def apply_retention(session: Session, keys: KeyBackend, retention_days: int) -> RetentionResult:
    """Empty the content of entries older than the retention period, keeping their hashes.

    A checkpoint is signed first, so every emptied entry is covered by a signed root, and the run is
    itself recorded with the range it emptied. Entries are otherwise kept whatever happens to the
    subjects they name (they hold pseudonyms only), so a subject's erasure never removes them.
    """
    if retention_days < 365:
        raise ValueError("audit entries are kept at least 365 days")
    checkpoint = create_checkpoint(session, keys)
    cutoff = _now() - timedelta(days=retention_days)
    due = (
        AuditEntry.seq <= checkpoint.tree_size,
        AuditEntry.occurred_at < cutoff,
        AuditEntry.pruned_at.is_(None),
    )
    count, first, last = session.execute(
        select(func.count(), func.min(AuditEntry.seq), func.max(AuditEntry.seq)).where(*due)
    ).one()
    if count:
        session.execute(
            update(AuditEntry)
            .where(*due)
            .values(
                pruned_at=_now(),
                actor_id="",
                actor_role="",
                action="",
                target_type=None,
                target_id=None,
                outcome="",
                request_id=None,
                project_id=None,
                details={},
            ),
            execution_options={"synchronize_session": False},
        )
    record(
        session,
        Actor.system(),
        AUDIT_RETENTION_APPLIED,
        target_type="audit_ledger",
        details={"entries": int(count), "first_seq": first, "last_seq": last},
    )
    log.info("audit.retention_applied", pruned=int(count), first_seq=first, last_seq=last)
    return RetentionResult(int(count), first, last)


# --- proofs ------------------------------------------------------------------------------------


def leaf_hashes(connection: Connection, size: int) -> list[bytes]:
    """Leaf hashes of the first ``size`` entries."""
    return [canonical.entry_leaf(digest) for _, digest in _stream_hashes(connection, 0, size)]


def prove_inclusion(connection: Connection, seq: int, tree_size: int) -> list[str]:
    """Audit path of entry ``seq`` in the tree of the first ``tree_size`` entries."""
    leaves = leaf_hashes(connection, tree_size)
    if len(leaves) != tree_size:
        raise InvalidCheckpoint(f"the ledger holds {len(leaves)} entries, not {tree_size}")
    if not 1 <= seq <= tree_size:
        raise InvalidCheckpoint(f"entry {seq} is not in a tree of {tree_size} entries")
    return [h.hex() for h in inclusion_proof(seq - 1, leaves)]


def prove_consistency(connection: Connection, first: int, second: int) -> list[str]:
    """Proof that the tree of ``second`` entries extends the tree of ``first`` entries."""
    if not 0 < first <= second:
        raise InvalidCheckpoint(f"no consistency proof from {first} to {second} entries")
    leaves = leaf_hashes(connection, second)
    if len(leaves) != second:
        raise InvalidCheckpoint(f"the ledger holds {len(leaves)} entries, not {second}")
    return [h.hex() for h in consistency_proof(first, leaves)]


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing verification found wrong; ``seq`` is the first entry it concerns."""

    kind: str
    seq: int | None
    message: str


@dataclass
class VerificationReport:
    """Result of recomputing the chain, the tree and every checkpoint."""

    entries: int = 0
    root_hash: str = ""
    checkpoints_checked: int = 0
    pruned: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        """The smallest sequence number named by any problem."""
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None


_ENTRY_COLUMNS = (
    AuditEntry.seq,
    AuditEntry.occurred_at,
    AuditEntry.actor_id,
    AuditEntry.actor_role,
    AuditEntry.action,
    AuditEntry.target_type,
    AuditEntry.target_id,
    AuditEntry.outcome,
    AuditEntry.request_id,
    AuditEntry.project_id,
    # As stored text, parsed with orjson: several times faster than the driver's JSON decoding.
    cast(AuditEntry.details, Text),
    AuditEntry.prev_hash,
    AuditEntry.entry_hash,
    AuditEntry.pruned_at,
)

# PostgreSQL formats each time exactly as the canonical encoding does, on its own core, so the
# verifier neither builds datetime objects nor formats them.
_PG_TIME = func.to_char(func.timezone("UTC", AuditEntry.occurred_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')


def _entry_columns(connection: Connection) -> tuple[Any, ...]:
    if connection.dialect.name == "postgresql":
        return (_ENTRY_COLUMNS[0], _PG_TIME, *_ENTRY_COLUMNS[2:])
    return _ENTRY_COLUMNS


MAX_PROBLEMS = 100


class _Verifier:
    """One streaming pass over the ledger; keeps O(log n) state whatever its size."""

    def __init__(
        self, targets: dict[int, list[tuple[str, SignedCheckpoint]]], report: VerificationReport
    ) -> None:
        self.targets = targets
        self.report = report
        self.builder = RootBuilder()
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.last_good_checkpoint = 0
        self.retention_ranges: list[tuple[int, int]] = []
        self.first_unattested_pruned: int | None = None

    def problem(self, kind: str, seq: int | None, message: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(Problem(kind, seq, message))

    def check_row(self, row: tuple[Any, ...]) -> None:
        seq = row[0]
        stored_prev, stored_hash = row[11], row[12]
        document = {
            "v": canonical.FORMAT_VERSION,
            "seq": seq,
            "time": row[1] if isinstance(row[1], str) else canonical.format_time(row[1]),
            "actor_id": row[2],
            "actor_role": row[3],
            "action": row[4],
            "target_type": row[5],
            "target_id": row[6],
            "outcome": row[7],
            "request_id": row[8],
            "project_id": row[9],
            "details": orjson.loads(row[10]),
            "prev_hash": stored_prev,
        }
        if row[13] is not None:
            # Retention removed the content, so the hash cannot be recomputed; it is attested by the
            # next signed checkpoint's root instead, and must lie in a range a retention entry names.
            intact = True
            self.report.pruned += 1
            if self.first_unattested_pruned is None:
                self.first_unattested_pruned = seq
            if not any(low <= seq <= high for low, high in self.retention_ranges):
                self.problem("unexplained_pruning", seq, f"entry {seq} was emptied outside any retention run")
        else:
            intact = sha256(canonical.canonical_bytes(document)).hexdigest() == stored_hash
        if seq != self.expected_seq:
            if seq > self.expected_seq:
                self.problem(
                    "missing_entries",
                    self.expected_seq,
                    f"entries {self.expected_seq}..{seq - 1} are missing",
                )
            else:
                self.problem("out_of_order", seq, f"entry {seq} appears after entry {self.expected_seq - 1}")
        elif stored_prev != self.prev_hash and intact:
            # This entry is as it was written, so the one before it was rewritten together with its
            # own hash (a moved or inserted entry, or a naive rewrite, fails its own hash instead).
            self.problem("broken_link", max(seq - 1, 1), f"entry {seq} does not link to entry {seq - 1}")
        if not intact:
            self.problem(
                "modified_entry", seq, f"entry {seq} does not match its hash: it was changed or moved"
            )
        self.builder.append(canonical.entry_leaf(stored_hash))
        self.prev_hash = stored_hash
        self.expected_seq = seq + 1
        if self.builder.size in self.targets:
            self.check_roots(self.builder.size)

    def check_roots(self, size: int) -> None:
        root = self.builder.root().hex()
        for kind, checkpoint in self.targets.pop(size):
            if checkpoint.root_hash != root:
                first = self.last_good_checkpoint + 1
                self.problem(
                    f"{kind}_root_mismatch",
                    first,
                    f"the first {size} entries no longer have the root of the {kind} signed at "
                    f"{canonical.format_time(checkpoint.signed_at)}: entries {first}..{size} were rewritten",
                )
            elif kind == "checkpoint":
                self.last_good_checkpoint = size
                self.first_unattested_pruned = None

    def finish(self, head_seq: int, head_hash: str) -> None:
        entries = self.report.entries = self.builder.size
        if self.first_unattested_pruned is not None:
            self.problem(
                "unattested_pruning",
                self.first_unattested_pruned,
                f"entry {self.first_unattested_pruned} was emptied but no signed checkpoint covers it",
            )
        self.report.root_hash = self.builder.root().hex()
        for size in sorted(self.targets):
            for kind, checkpoint in self.targets[size]:
                self.problem(
                    f"{kind}_truncated",
                    entries + 1,
                    f"the {kind} signed at {canonical.format_time(checkpoint.signed_at)} covers {size} "
                    f"entries, the ledger holds {entries}: entries {entries + 1}..{size} were removed",
                )
        if head_seq != entries or (entries and head_hash != self.prev_hash):
            self.problem(
                "head_mismatch",
                min(head_seq, entries) + 1,
                f"the chain head says {head_seq} entries, the ledger holds {entries}",
            )


def verify_ledger(
    connection: Connection,
    public_keys: dict[str, bytes],
    saved: SignedCheckpoint | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerificationReport:
    """Recompute every entry hash, the chain links, the Merkle tree and every checkpoint, streaming."""
    report = VerificationReport()
    targets: dict[int, list[tuple[str, SignedCheckpoint]]] = {}
    verifier = _Verifier(targets, report)
    verifier.retention_ranges = [
        (int(d.get("first_seq") or 0), int(d.get("last_seq") or 0))
        for d in connection.scalars(
            select(AuditEntry.details).where(AuditEntry.action == AUDIT_RETENTION_APPLIED)
        )
        if isinstance(d, dict)
    ]
    # Plain rows on the caller's connection: an ORM session here would take over (and on closing,
    # end) a transaction that belongs to the caller.
    rows = connection.execute(
        select(
            AuditCheckpoint.tree_size,
            AuditCheckpoint.root_hash,
            AuditCheckpoint.signed_at,
            AuditCheckpoint.key_id,
            AuditCheckpoint.signature,
        ).order_by(AuditCheckpoint.tree_size, AuditCheckpoint.id)
    )
    checkpoints = [
        SignedCheckpoint(int(size), str(root), _aware(signed_at), str(key_id), str(signature))
        for size, root, signed_at, key_id, signature in rows
    ]
    for checkpoint in checkpoints:
        if not checkpoint_signature_valid(checkpoint, public_keys):
            verifier.problem(
                "checkpoint_signature",
                checkpoint.tree_size,
                f"checkpoint of {checkpoint.tree_size} entries is not signed by a ledger key "
                f"({checkpoint.key_id})",
            )
        targets.setdefault(checkpoint.tree_size, []).append(("checkpoint", checkpoint))
    if saved is not None:
        if not checkpoint_signature_valid(saved, public_keys):
            verifier.problem(
                "saved_checkpoint_signature", saved.tree_size, "the saved checkpoint is not validly signed"
            )
        targets.setdefault(saved.tree_size, []).append(("saved", saved))
    report.checkpoints_checked = len(checkpoints) + (saved is not None)

    for row in connection.execute(
        select(*_entry_columns(connection)).order_by(AuditEntry.seq), execution_options=_STREAM
    ):
        verifier.check_row(tuple(row))
        if progress is not None and not verifier.builder.size % 10_000:
            progress(verifier.builder.size)
    head_seq, head_hash = connection.execute(
        select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)
    ).one()
    verifier.finish(int(head_seq), str(head_hash))
    if progress is not None:
        progress(report.entries)
    return report
