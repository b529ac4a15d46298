"""The consent filter of every release: only subjects whose consent still holds are counted.

A dataset version holds the rows of subjects who had granted its purpose when it was ingested.
Since then some may have withdrawn (their rows leave the stored versions later, with the erasure
job), been restricted or erased, or their grant may have expired. Before every release,
``consenting`` drops the rows of every subject whose effective status for the dataset's purpose is
not ``granted`` at that instant (the consent core's batch status call, which reads the status cache
first). Pseudonyms are mapped to subjects through the consent core's mapping of the dataset's domain
(``consent.decisions.pseudonyms.resolve``); a pseudonym it does not know is dropped too. Subject ids
are used only inside this module: they are never returned, logged or stored.

**Speed.** Deriving 18,000 statuses costs tens of milliseconds, while the answer rarely changes. So
the answer is kept per dataset version, with what it was derived from, and reused while

* the instant asked for lies in ``[derived at, next scheduled change)``, where the next scheduled
  change is the earliest instant at which any status can change by itself: the start of the next
  month (students reach an age on the first day of a month), the next rule version to come into
  force, the next form published, the next grant to expire, anything stamped later than the
  derivation by a server whose clock is ahead, and at most ``MAX_REUSE`` later;
* nothing a status depends on was written since: the newest decision, withdrawal event (a
  withdrawal, an erasure, a restriction), rule and form version — index look-ups, read on every
  call — and the roster: the newest change to a student's row (a corrected birth date, a
  restriction, an erasure) and the guardian links (their number and newest one). The roster is
  scanned for these (milliseconds at 18,000 students), so that read stands for ``ROSTER_RECHECK``
  (2 s): a roster correction or a guardian link without any decision or event is honoured within
  2 seconds, everything else by the very next call;
* on PostgreSQL, no other transaction that was running when the markers were read has ended
  since. Identifiers and timestamps are handed out before commit, so a withdrawal could commit
  after a later decision that the derivation already saw, leaving the newest identifier unchanged;
  but its transaction was running (writers lock the student's row first, which gives them a
  transaction id before their decision gets its identifier), so this check catches it. Under many
  concurrent writers this costs extra derivations, never a missed change.

A withdrawal (a decline, an erasure, a restriction) that committed before the call is therefore
always honoured by it. An answer for a past instant is given but not kept.

``digest`` is the SHA-256 (hex) of the kept pseudonyms, sorted and joined by newlines: it names the
set of consenting subjects, so a release can be reused only for exactly the same set.
"""

from __future__ import annotations

import calendar
import hashlib
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Any

import polars as pl
from sqlalchemy import Date, DateTime, bindparam, text
from sqlalchemy.orm import Session

from consent.decisions import pseudonyms
from consent.decisions.models import Status
from consent.decisions.status import student_statuses
from enclave.datasets.frames import PSEUDONYM, LoadedFrame
from infra.logging import get_logger

log = get_logger(__name__)

MAX_REUSE = timedelta(hours=1)
"""An answer is derived again at least this often, whatever the markers say."""
ROSTER_RECHECK = 2.0
"""Seconds for which a read of the roster markers stands (they cost scans of the roster)."""
MAX_ENTRIES = 16
"""Dataset versions whose answer is kept (each holds the kept rows of one frame)."""

# Written with every decision and withdrawal event (a withdrawal, a decline, an erasure, a
# restriction), every rule and form version: index look-ups, read on every call.
_EVENTS = """
SELECT (SELECT MAX(id) FROM consent_decision), (SELECT MAX(id) FROM consent_withdrawal),
       (SELECT MAX(id) FROM consent_country_rule), (SELECT MAX(id) FROM consent_form){running}
"""
# Roster changes without an event (a corrected birth date, guardians linked or unlinked): scans of
# the roster, read at most every ``ROSTER_RECHECK``.
_ROSTER = """
SELECT s.updated, s.erased, s.restricted, g.links, g.newest
FROM (SELECT MAX(updated_at) AS updated, MAX(erased_at) AS erased, MAX(restricted_at) AS restricted
      FROM consent_student) AS s,
     (SELECT COUNT(*) AS links, MAX(created_at) AS newest FROM consent_guardianship) AS g
"""
# The transactions of this database running now (other than the caller's): each holds the lock on
# its own id. The backends' databases come from pg_stat_activity, read afresh (it is otherwise kept
# for the whole transaction).
_PG_RUNNING = """,
       (SELECT string_agg(DISTINCT CAST(l.transactionid AS text), ',')
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
          AND l.pid <> pg_backend_pid() AND a.datname = current_database())"""

# Instants after :t at which a status may change without a new write: a rule version coming into
# force, a form published in advance, a grant expiring, and anything recorded "in the future" by a
# server whose clock is ahead (a decision, a restriction or an erasure stamped after :t).
_SCHEDULED = """
SELECT (SELECT MIN(effective_from) FROM consent_country_rule WHERE effective_from > :d) AS rule,
       (SELECT MIN(published_at) FROM consent_form WHERE published_at > :t) AS form,
       (SELECT MIN(expires_at) FROM consent_decision WHERE expires_at > :t) AS expiry,
       (SELECT MIN(recorded_at) FROM consent_decision WHERE recorded_at > :t) AS recorded,
       (SELECT MIN(erased_at) FROM consent_student WHERE erased_at > :t) AS erased,
       (SELECT MIN(restricted_at) FROM consent_student WHERE restricted_at > :t) AS restricted
"""


@dataclass(frozen=True)
class Consenting:
    """The frame without the rows of subjects who no longer consent, and what identifies it."""

    frame: pl.DataFrame
    digest: str
    """SHA-256 hex of the sorted kept pseudonyms (joined by newlines)."""
    excluded: int
    """Rows dropped because their subject's status for the purpose is not ``granted``."""


@dataclass(frozen=True)
class _Answer:
    """One derivation and what it was derived from (replaced as a whole, so always consistent)."""

    markers: tuple[Any, ...]
    running: frozenset[int]
    derived_at: datetime
    until: datetime
    kept: pl.Series | None
    """Which rows are kept (None: every row)."""
    digest: str
    excluded: int


@dataclass
class _Entry:
    fingerprint: tuple[Any, ...]
    domain: str
    frame: weakref.ref[pl.DataFrame]
    pairs: pl.DataFrame
    """``pseudonym`` and ``subject`` of each row of the frame (null: a pseudonym the mapping lacks)."""
    answer: _Answer | None = None


_entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
_lock = threading.Lock()


@dataclass
class Counters:
    """What this process did (for tests and benchmarks)."""

    derivations: int = 0
    """Times the statuses were derived (the other calls were answered from what was kept)."""


counters = Counters()


def consenting(session: Session, loaded: LoadedFrame, at: datetime | None = None) -> Consenting:
    """``loaded.frame`` without the rows whose subject's status for ``loaded.purpose`` is not granted.

    ``at`` defaults to now; a past instant is answered but not kept.
    """
    now = datetime.now(UTC)
    moment = now if at is None else at.astimezone(UTC)
    key = (loaded.dataset_id, loaded.version)
    fingerprint = (loaded.fingerprint, loaded.purpose, loaded.domain)
    markers, running = _markers(session)
    with _lock:
        entry = _entries.get(key)
        if entry is not None and (entry.fingerprint != fingerprint or entry.frame() is not loaded.frame):
            entry = None
        if entry is not None:
            _entries.move_to_end(key)
            answer = entry.answer
            if answer is not None and _holds(answer, markers, running, moment):
                return _answer(loaded, answer.kept, answer.digest, answer.excluded)
    if entry is None:
        entry = _Entry(
            fingerprint=fingerprint,
            domain=loaded.domain,
            frame=weakref.ref(loaded.frame),
            pairs=_subjects_of(session, loaded),
        )
    kept, excluded = _derive(session, loaded, entry.pairs["subject"], moment)
    result = _answer(loaded, kept, None, excluded)
    # An answer for a past instant is not kept: later writes are not in it.
    fresh = (
        _Answer(
            markers=markers,
            running=running,
            derived_at=moment,
            until=_next_scheduled_change(session, moment),
            kept=kept,
            digest=result.digest,
            excluded=excluded,
        )
        if moment >= now
        else None
    )
    log.info(
        "dp.consent_filter_derived",
        dataset=loaded.dataset_id,
        version=loaded.version,
        rows=loaded.frame.height,
        excluded=excluded,
    )
    with _lock:
        if fresh is not None:
            entry.answer = fresh
        _entries[key] = entry
        _entries.move_to_end(key)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return result


def _subjects_of(session: Session, loaded: LoadedFrame) -> pl.DataFrame:
    """The subject of each row, from the pairs already known for the domain and the consent core's
    mapping for the rest (a new version or a rewritten one mostly holds the same subjects)."""
    with _lock:
        known = [e.pairs for e in _entries.values() if e.domain == loaded.domain]
    rows = loaded.frame.select(PSEUDONYM)
    if known:
        pairs = pl.concat(known).drop_nulls().unique(PSEUDONYM)
        rows = rows.join(pairs, on=PSEUDONYM, how="left", maintain_order="left")
    else:
        rows = rows.with_columns(pl.lit(None, dtype=pl.String).alias("subject"))
    missing = rows.filter(pl.col("subject").is_null())[PSEUDONYM]
    if missing.len():
        mapping = pseudonyms.resolve(session, loaded.domain, missing.to_list())
        found = rows[PSEUDONYM].replace_strict(
            list(mapping), list(mapping.values()), default=None, return_dtype=pl.String
        )
        rows = rows.with_columns(pl.coalesce(pl.col("subject"), found).alias("subject"))
    return rows


def forget() -> None:
    """Drop every kept answer (the next calls derive again)."""
    with _lock:
        _entries.clear()
        _roster_seen.clear()


def _answer(loaded: LoadedFrame, kept: pl.Series | None, digest: str | None, excluded: int) -> Consenting:
    frame = loaded.frame if kept is None else loaded.frame.filter(kept)
    if digest is None:
        names = frame[PSEUDONYM].sort().to_list()
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    return Consenting(frame=frame, digest=digest, excluded=excluded)


def _holds(answer: _Answer, markers: tuple[Any, ...], running: frozenset[int], moment: datetime) -> bool:
    if not answer.derived_at <= moment < answer.until or answer.markers != markers:
        return False
    # A transaction running at derivation time that is no longer running may have written a
    # decision with an identifier below the newest one seen then.
    return answer.running <= running


def _derive(
    session: Session, loaded: LoadedFrame, subjects: pl.Series, moment: datetime
) -> tuple[pl.Series | None, int]:
    """Which rows to keep (None: all) and how many are dropped."""
    counters.derivations += 1
    known = subjects.drop_nulls().unique().sort().to_list()
    table = student_statuses(session, known, at=moment, purposes=[loaded.purpose])
    granted = [s for s, row in table.rows.items() if row.get(loaded.purpose) is Status.granted]
    kept = subjects.is_in(granted).fill_null(False)
    excluded = int(kept.len() - kept.sum())
    return (None if not excluded else kept), excluded


_roster_seen: dict[str, tuple[float, tuple[Any, ...]]] = {}
"""Per database: when the roster markers were read, and what they were."""


def _markers(session: Session) -> tuple[tuple[Any, ...], frozenset[int]]:
    """What the statuses depend on, and (PostgreSQL) the other transactions running now."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(text("SELECT pg_stat_clear_snapshot()"))
    row = session.execute(text(_EVENTS.format(running=_PG_RUNNING if postgres else ""))).one()
    events = tuple(row)
    running: frozenset[int] = frozenset()
    if postgres:
        listed: str | None = events[-1]
        events = events[:-1]
        running = frozenset(int(x) for x in (listed or "").split(",") if x)
    database = str(session.get_bind().engine.url)
    seen = _roster_seen.get(database)
    if seen is None or monotonic() - seen[0] >= ROSTER_RECHECK:
        seen = (monotonic(), tuple(session.execute(text(_ROSTER)).one()))
        _roster_seen[database] = seen
    return events + seen[1], running


def _next_month(moment: datetime) -> datetime:
    last = calendar.monthrange(moment.year, moment.month)[1]
    return datetime.combine(date(moment.year, moment.month, last), time.min, tzinfo=UTC) + timedelta(days=1)


def _next_scheduled_change(session: Session, moment: datetime) -> datetime:
    """The first instant after ``moment`` at which some status may change without a write."""
    stamp = DateTime(timezone=True)
    stamps = dict.fromkeys(("form", "expiry", "recorded", "erased", "restricted"), stamp)
    statement = (
        text(_SCHEDULED)
        .bindparams(bindparam("t", type_=stamp), bindparam("d", type_=Date()))
        .columns(rule=Date(), **stamps)
    )
    rule, *instants = session.execute(statement, {"t": moment, "d": moment.date()}).one()
    candidates = [moment + MAX_REUSE, _next_month(moment)]
    if rule is not None:
        candidates.append(datetime.combine(rule, time.min, tzinfo=UTC))
    for instant in instants:
        if instant is not None:
            candidates.append(instant if instant.tzinfo else instant.replace(tzinfo=UTC))
    return min(candidates)
