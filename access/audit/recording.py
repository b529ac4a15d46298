"""Recording audit entries: one call inside the transaction of the change it describes.

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

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from sqlalchemy import Table, bindparam, delete, event, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction

from access.audit import canonical
from access.audit.actions import (
    Details,
    FailureDetails,
    Outcome,
    Role,
    validate_details,
)
from access.audit.models import AuditEntry, AuditHead, AuditPending
from access.audit.sealer import sealer_for
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


def clock() -> datetime:
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
# The hashed fields of an entry besides its sequence number and the previous hash.
PENDING_NAMES = (
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
# A textual INSERT: a Core insert() of one row on PostgreSQL adds RETURNING id, and reading that
# result back cost every audited request more than the rest of its audit bookkeeping. The values
# keep the columns' types, so they are sent exactly as before.
_INSERT_PENDING = text(
    f"INSERT INTO audit_pending ({', '.join(PENDING_NAMES)}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join(':' + name for name in PENDING_NAMES)})"
).bindparams(*(bindparam(name, type_=_PENDING.c[name].type) for name in PENDING_NAMES))
_LOCK_HEAD = (
    update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq).returning(_HEAD.c.seq, _HEAD.c.entry_hash)
)
# One fixed key for "the audit chain" (the ASCII of "AUDITLOG"); any process that appends takes it.
_AUDIT_LOCK_KEY = 0x4155444954204C47
_READ_PENDING = select(_PENDING.c.id, *(_PENDING.c[name] for name in PENDING_NAMES)).order_by(_PENDING.c.id)
_INSERT_ENTRIES = insert(_ENTRY)
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1)


def _row(pending: _Pending) -> dict[str, Any]:
    return {
        "occurred_at": clock(),
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
        session.connection().execute(_INSERT_PENDING, rows)


SEAL_BATCH = 5000

# PostgreSQL sealing talks to the driver directly, in pipelines: the lock, the head and the queue
# are read in one round trip, and the chained batch is moved from the queue into the ledger by
# one statement (the server copies the columns; only ids and hashes travel), so a pass costs three
# round trips and little Python whatever its size. Times come formatted as the canonical encoding
# wants them and details as stored text, as verification reads them.
_PG_LOCK = f"SELECT pg_advisory_xact_lock({_AUDIT_LOCK_KEY})"
_PG_TRY_LOCK = f"SELECT pg_try_advisory_xact_lock({_AUDIT_LOCK_KEY})"
_PG_READ_HEAD = "SELECT seq, entry_hash FROM audit_head WHERE id = 1"
_PG_READ_PENDING = (
    f"SELECT id, to_char(occurred_at AT TIME ZONE 'UTC', '{canonical.PG_TIME_FORMAT}'), "  # noqa: S608
    + ", ".join(name for name in PENDING_NAMES if name not in ("occurred_at", "details"))
    + ", details::text FROM audit_pending ORDER BY id LIMIT %s"
)
_PG_PENDING_NAMES = (
    "occurred_at",
    *(name for name in PENDING_NAMES if name not in ("occurred_at", "details")),
    "details",
)
_PG_MOVE = (
    "WITH chained (id, seq, prev_hash, entry_hash) AS ("  # noqa: S608 - fixed column names
    " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[])"
    "), moved AS ("
    " DELETE FROM audit_pending p USING chained c WHERE p.id = c.id"
    f" RETURNING c.seq, {', '.join('p.' + name for name in PENDING_NAMES)}, c.prev_hash, c.entry_hash"
    f") INSERT INTO audit_entry (seq, {', '.join(PENDING_NAMES)}, prev_hash, entry_hash)"
    " SELECT * FROM moved ORDER BY seq"
)
_PG_MOVE_HEAD = "UPDATE audit_head SET seq = %s, entry_hash = %s WHERE id = 1"


def _links(values: list[dict[str, Any]], seq: int, prev_hash: str) -> list[tuple[int, str, str]]:
    """``(seq, prev_hash, entry_hash)`` for each queued entry's hashed fields, after ``seq``."""
    links = []
    for fields in values:
        seq += 1
        entry_hash = canonical.entry_hash(canonical.entry_document(seq=seq, prev_hash=prev_hash, **fields))
        links.append((seq, prev_hash, entry_hash))
        prev_hash = entry_hash
    return links


def _pg_fields(row: Any) -> dict[str, Any]:
    """A queued row read by ``_PG_READ_PENDING`` (id, time text, fields, details text) as fields."""
    fields = dict(zip(_PG_PENDING_NAMES, row[1:], strict=True))
    fields["details"] = orjson.loads(fields["details"])
    return fields


def _fetch_one(cursor: psycopg.Cursor[Any]) -> Any:
    row = cursor.fetchone()
    if row is None:  # only the head can be missing: a database the migrations did not build
        raise RuntimeError("the audit chain head row is missing (run the migrations)")
    return row


def _seal_postgresql(driver: psycopg.Connection[Any], *, settle: float = 0.0, only_owed: bool = False) -> int:
    """Seal on PostgreSQL (see :func:`seal`); ``only_owed``: return at once when the chain lock is
    held by another sealer and the queue is empty, instead of waiting for that sealer."""
    with driver.pipeline():
        tried = driver.execute(_PG_TRY_LOCK)
        head = driver.execute(_PG_READ_HEAD)
        pending = driver.execute(_PG_READ_PENDING, (SEAL_BATCH,))
    if not _fetch_one(tried)[0]:
        # Another sealer holds the chain. An empty queue (read after the caller's commit) means
        # every entry committed before this pass is chained and committed already: a pass deletes
        # what it chains in the same transaction. Otherwise wait for that sealer, then let the
        # queue fill a little before reading it, so that under a steady stream the passes come at
        # most every ``settle`` seconds, each chaining many entries, instead of back to back with
        # a few each.
        if only_owed and not pending.fetchmany(1):
            return 0
        driver.execute(_PG_LOCK)
        if settle:
            time.sleep(settle)
        with driver.pipeline():
            head = driver.execute(_PG_READ_HEAD)
            pending = driver.execute(_PG_READ_PENDING, (SEAL_BATCH,))
    seq, prev_hash = _fetch_one(head)
    start = seq
    rows = pending.fetchall()
    while rows:
        links = _links([_pg_fields(row) for row in rows], seq, prev_hash)
        ids = [row[0] for row in rows]
        seqs, prevs, hashes = (list(column) for column in zip(*links, strict=True))
        seq, prev_hash = seqs[-1], hashes[-1]
        more = len(rows) == SEAL_BATCH
        with driver.pipeline():
            moved = driver.execute(_PG_MOVE, (ids, seqs, prevs, hashes))
            driver.execute(_PG_MOVE_HEAD, (seq, prev_hash))
            if more:
                pending = driver.execute(_PG_READ_PENDING, (SEAL_BATCH,))
        if moved.rowcount != len(ids):
            raise RuntimeError(f"sealing moved {moved.rowcount} of {len(ids)} queued entries")
        rows = pending.fetchall() if more else []
    return int(seq - start)


def seal(session: Session) -> int:
    """Chain every pending entry this transaction can see, in queue order; return how many.

    Sealers take one lock before they read the chain head: on PostgreSQL a transaction-level
    advisory lock (it writes nothing, so a pass that finds nothing to do costs no commit flush), on
    SQLite the database write lock taken by a no-op update of the head row. So two sealers run one
    after the other, each continuing from the head the previous one committed, and the chain stays
    linear with no gap and no fork. A pass chains what is queued when it reads the queue (batch
    after batch while a backlog fills whole batches) and then stops, so it commits: under a
    steady stream of writers the chain keeps committing instead of growing one endless
    transaction, and entries that arrive meanwhile go to the next pass.
    """
    write_queued(session)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        if not isinstance(driver, psycopg.Connection):
            raise TypeError("audit sealing on PostgreSQL needs the psycopg driver")
        return _seal_postgresql(driver)
    seq, prev_hash = connection.execute(_LOCK_HEAD).one()
    start = seq
    while rows := connection.execute(_READ_PENDING.limit(SEAL_BATCH)).all():
        values = [dict(zip(PENDING_NAMES, row[1:], strict=True)) for row in rows]
        links = _links(values, seq, prev_hash)
        entries = [
            {**fields, "seq": link_seq, "prev_hash": link_prev, "entry_hash": link_hash}
            for fields, (link_seq, link_prev, link_hash) in zip(values, links, strict=True)
        ]
        seq, _, prev_hash = links[-1]
        connection.execute(_INSERT_ENTRIES, entries)
        connection.execute(delete(_PENDING).where(_PENDING.c.id.in_([row[0] for row in rows])))
        if len(rows) < SEAL_BATCH:
            break
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
    error: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    project_id: str | None = None,
    outcome: Outcome = Outcome.denied,
    details: FailureDetails | None = None,
) -> None:
    """Record a refused (or failed) attempt in its own transaction, once the caller's one ends.

    The entry carries ``error``, the machine-readable reason; or, for an action registered with a
    failure model of its own (``register_action(..., failure=...)``), ``details`` of exactly that
    model (the reason in its ``error`` field). One of the two, not both.
    """
    if (error is None) == (details is None):
        raise TypeError("record_denied takes either error or details")
    pending = _pending(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        details=details if details is not None else {"error": error},
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

    The finished session may not run SQL inside its own hook, hence a fresh one on the same bind
    when there is SQL to run (an ordinary commit on an engine only wakes the sealer). With an
    engine, the process's background sealer chains the entries within milliseconds
    (``access.audit.sealer``). A session bound to a caller's connection (a test's transaction, a
    migration) holds entries no other connection can see yet, so they are chained right here.
    """
    if not independent and not queued:
        return
    bind = session.get_bind()
    if isinstance(bind, Engine) and not independent:
        sealer_for(bind).wake()  # the common case: nothing to write, so no session either
        return
    with Session(bind=bind, join_transaction_mode="create_savepoint") as fresh:
        if independent:
            fresh.connection().execute(_INSERT_PENDING, [_row(p) for p in independent])
        if isinstance(bind, Engine):
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


def seal_owed(engine: Engine, *, settle: float = 0.0) -> int:
    """One sealing transaction on a connection of ``engine``, for the background sealer.

    Under READ COMMITTED each statement sees every commit made before it started, so a pass that
    finds the queue empty while another sealer holds the chain owes nothing and returns without
    waiting; otherwise it waits for the chain lock (PostgreSQL queues the waiters; no polling) and
    seals what the previous holder left. On PostgreSQL the pass runs on the driver's connection
    without an ORM session: it is the one transaction every audited write pays for.
    """
    if engine.dialect.name != "postgresql":
        with Session(bind=engine) as session:
            sealed = seal(session)
            if sealed:
                session.commit()
        return sealed
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        if not isinstance(driver, psycopg.Connection):
            raise TypeError("audit sealing on PostgreSQL needs the psycopg driver")
        sealed = _seal_postgresql(driver, settle=settle, only_owed=True)
        driver.commit()
        return sealed
    finally:
        pooled.close()  # back to the pool, which rolls back what did not commit (or drops it)


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
