"""The status cache: one row per student with every purpose's status and the span it holds for.

Deriving statuses reads every decision of every subject asked about; for the whole project that is
some 170,000 decisions and takes over a second. But a student's statuses only change at known
moments: when something is written (a decision, a roster change, a new rule or form version, an
erasure or restriction) or when time crosses a date fixed in advance (an age threshold under the rule
in force, a form version's expiry, the start of a future rule version or form). So each student's
statuses are computed once, with the first such future date as ``valid_until``, and a batch call at
an instant inside ``[valid_from, valid_until)`` reads one row per student.

Correctness rests on every writer calling ``refresh`` (or ``invalidate``) for the students it
touches, in its own transaction. ``refresh`` locks the students' rows first, as recording a decision
does, so a refresh cannot write statuses computed before a decision that commits meanwhile. A row
that is missing, stale or for another purpose list is simply not used: the engine derives instead.
The daily job refreshes the rows whose span is about to end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import DateTime, String, bindparam, delete, false, func, insert, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from consent.decisions import ages
from consent.decisions.models import Decision, StatusCache
from consent.decisions.status import STATUS_CODES, derive_student_statuses, probe_filter
from consent.forms.models import ConsentForm
from consent.models import CountryRule
from consent.rosters.models import Student
from infra.db import as_utc

CHUNK = 2_000
HORIZON = timedelta(days=366)
"""A row never claims to hold for longer than this, so even an unforeseen change is picked up."""

# Each student with their cache row and the last time their country's rules or forms changed (up to
# the instant ``:t``), for ``lookup`` and ``due_for_refresh``.
WITH_ROWS = """WITH country_change AS (
    SELECT country_code, MAX(changed) AS changed FROM (
        SELECT country_code, created_at AS changed FROM consent_country_rule
        UNION ALL
        SELECT country_code, published_at AS changed FROM consent_form WHERE published_at <= :t
    ) AS changes GROUP BY country_code
)
"""
ROWS = """FROM consent_student s
LEFT JOIN consent_status_cache c ON c.student_id = s.id
LEFT JOIN country_change cc ON cc.country_code = s.country_code
"""

# A row is used only if nothing it depends on changed after it was computed: the student's own row
# (rectified, restricted, erased), or their country's rules or forms (a version recorded or
# published since). These checks cost little and keep the cache right even for a writer that forgot
# to refresh; decisions and guardian links are refreshed by their writers.
CACHED_CODES = """CASE WHEN c.purposes = :purposes AND c.valid_from <= :t AND :t < c.valid_until
             AND s.updated_at <= c.valid_from
             AND (s.restricted_at IS NULL OR s.restricted_at <= c.valid_from OR s.restricted_at > :t)
             AND (s.erased_at IS NULL OR s.erased_at <= c.valid_from OR s.erased_at > :t)
             AND (cc.changed IS NULL OR cc.changed <= c.valid_from)
            THEN c.codes END"""
"""The student's cached codes if their row answers for ``:t`` (else NULL), over ``WITH_ROWS``/``ROWS``."""
_LOOKUP = f"""
{{with_rows}}SELECT s.subject_id, {CACHED_CODES}
{{rows}}WHERE {{subject_filter}}
"""


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def cached_codes_statement(sql: str) -> TextClause:
    """A statement using ``CACHED_CODES``, with its ``:t`` and ``:purposes`` typed."""
    return text(sql).bindparams(
        bindparam("t", type_=DateTime(timezone=True)), bindparam("purposes", type_=String())
    )


def lookup(
    session: Session, subject_ids: Sequence[str] | None, *, at: datetime, purposes: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """Cached codes of the students covered at ``at``, and the ids of those that must be derived."""
    where, ids = "1 = 1", None
    if subject_ids is not None:
        where, ids = probe_filter(session, "s.subject_id", subject_ids)
    statement = cached_codes_statement(_LOOKUP.format(with_rows=WITH_ROWS, rows=ROWS, subject_filter=where))
    params: dict[str, Any] = {"t": at, "purposes": ",".join(purposes)}
    if ids is not None:
        params["ids"] = ids
    cached: dict[str, str] = {}
    misses: list[str] = []
    for subject, codes in session.execute(statement, params):
        if codes is None:
            misses.append(subject)
        else:
            cached[subject] = codes
    return cached, misses


def invalidate(session: Session, student_ids: Sequence[int]) -> None:
    """Drop the rows of these students (by row id): their statuses are derived until refreshed."""
    for start in range(0, len(student_ids), CHUNK):
        part = list(student_ids[start : start + CHUNK])
        session.execute(delete(StatusCache).where(StatusCache.student_id.in_(part)))


def _spans_end(session: Session, students: Sequence[Student], moment: datetime) -> dict[int, datetime]:
    """For each student, the first instant after ``moment`` at which a status may change by itself.

    Students with a decision recorded after ``moment`` are left out: their row would be stale.
    """
    countries = {s.country_code for s in students}
    versions: dict[str, list[CountryRule]] = defaultdict(list)
    for rule in session.execute(
        select(CountryRule)
        .where(CountryRule.country_code.in_(countries))
        .order_by(CountryRule.effective_from)
    ).scalars():
        versions[rule.country_code].append(rule)
    future_forms: dict[str, datetime] = dict(
        session.execute(
            select(ConsentForm.country_code, func.min(ConsentForm.published_at))
            .where(ConsentForm.country_code.in_(countries), ConsentForm.published_at > moment)
            .group_by(ConsentForm.country_code)
        ).all()
    )
    last_decided = dict(
        session.execute(
            select(Decision.student_id, func.max(Decision.recorded_at))
            .where(Decision.student_id.in_([s.id for s in students]))
            .group_by(Decision.student_id)
        ).all()
    )
    expiries = dict(
        session.execute(
            select(Decision.student_id, func.min(Decision.expires_at))
            .where(Decision.student_id.in_([s.id for s in students]), Decision.expires_at > moment)
            .group_by(Decision.student_id)
        ).all()
    )
    today = moment.date()
    ends: dict[int, datetime] = {}
    for student in students:
        decided = last_decided.get(student.id)
        if decided is not None and as_utc(decided) > moment:
            continue  # recorded "after" this instant (another clock): leave this student to derivation
        candidates = [moment + HORIZON]
        rules = versions.get(student.country_code, [])
        current = [r for r in rules if r.effective_from <= today]
        later = [r for r in rules if r.effective_from > today]
        if later:
            candidates.append(_midnight(later[0].effective_from))
        if current:
            rule = current[-1]
            for age in (rule.assent_from_age, rule.joint_consent_from_age, rule.self_consent_age):
                if age is not None:
                    birthday = _midnight(ages.birthday_of_age(student.birth_year, student.birth_month, age))
                    if birthday > moment:
                        candidates.append(birthday)
        if student.country_code in future_forms:
            candidates.append(as_utc(future_forms[student.country_code]))
        expiry = expiries.get(student.id)
        if expiry is not None:
            candidates.append(as_utc(expiry))
        for marker in (student.restricted_at, student.erased_at):
            if marker is not None and as_utc(marker) > moment:
                candidates.append(as_utc(marker))
        ends[student.id] = min(candidates)
    return ends


def refresh(
    session: Session,
    student_ids: Sequence[int] | None = None,
    *,
    country: str | None = None,
    at: datetime | None = None,
) -> int:
    """Recompute and store the rows of these students (by row id), of a country, or of everyone.

    Locks the students' rows first (PostgreSQL), so it serialises with decisions on them. Returns
    how many rows were written.
    """
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    query = select(Student.id).order_by(Student.id)
    if student_ids is not None:
        query = query.where(Student.id.in_(list(student_ids)) if student_ids else false())
    if country is not None:
        query = query.where(Student.country_code == country)
    ids = list(session.execute(query).scalars())
    purposes: tuple[str, ...] | None = None
    written = 0
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        students = list(
            session.execute(
                select(Student).where(Student.id.in_(part)).order_by(Student.id).with_for_update()
            ).scalars()
        )
        table = derive_student_statuses(session, [s.subject_id for s in students], at=moment)
        purposes = table.purposes
        ends = _spans_end(session, students, moment)
        session.execute(delete(StatusCache).where(StatusCache.student_id.in_(part)))
        rows = [
            {
                "student_id": student.id,
                "codes": "".join(str(STATUS_CODES[table.rows[student.subject_id][p]]) for p in purposes),
                "purposes": ",".join(purposes),
                "valid_from": moment,
                "valid_until": ends[student.id],
            }
            for student in students
            if student.subject_id in table.rows and student.id in ends
        ]
        if rows:
            session.execute(insert(StatusCache), rows)
        written += len(rows)
    return written


_DUE = """
{with_rows}SELECT s.id
{rows}WHERE c.student_id IS NULL
   OR c.purposes <> :purposes
   OR c.valid_until < :before
   OR s.updated_at > c.valid_from
   OR (s.restricted_at > c.valid_from AND s.restricted_at <= :t)
   OR (s.erased_at > c.valid_from AND s.erased_at <= :t)
   OR cc.changed > c.valid_from
ORDER BY s.id
LIMIT :limit
"""


def due_for_refresh(
    session: Session, before: datetime, *, now: datetime | None = None, limit: int = 50_000
) -> list[int]:
    """Students whose row is missing, ends before ``before``, or no longer holds (see ``lookup``)."""
    from consent.decisions.status import all_purposes

    statement = text(_DUE.format(with_rows=WITH_ROWS, rows=ROWS)).bindparams(
        bindparam("t", type_=DateTime(timezone=True)),
        bindparam("before", type_=DateTime(timezone=True)),
        bindparam("purposes", type_=String()),
    )
    params = {
        "t": now or datetime.now(UTC),
        "before": before,
        "purposes": ",".join(all_purposes(session)),
        "limit": limit,
    }
    return list(session.execute(statement, params).scalars())
