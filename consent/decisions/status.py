"""Effective consent status: one SQL statement answers for any number of subjects at any instant.

The status of a student for a purpose at instant ``t`` is derived, never stored, from:

* the country rule in force on ``t``'s date (UTC) for the student's country;
* the student's age on that date. Only the birth year and month are held, so a student is taken to
  reach an age on the first day of the month after their birth month: never older than they are,
  so a guardian's consent is never dropped too early;
* the decisions recorded at or before ``t``: for each purpose, the latest decision of each listed
  guardian, the student's latest consent and latest assent.

Regimes (ages in completed years; see ``consent.service`` for the rule fields):

=============  =====================================  ==========================================
regime         when                                   granted when
=============  =====================================  ==========================================
guardian       below the joint band / self age        the guardians grant (one, or all listed, by
                                                      rule) and, from ``assent_from_age``, the
                                                      child's latest assent is a grant
joint          in ``[joint_from, self_age)``          the guardians grant and the student consents
self           at or above ``self_consent_age``       the student consents
=============  =====================================  ==========================================

Guardians: with ``one`` the latest decision of any listed guardian counts (a later withdrawal by the
other parent ends the consent); with ``all`` every listed guardian must grant, and one decline or
withdrawal is enough to decline or withdraw. A decision by someone no longer listed as a guardian
does not count.

Each contributing grant is then checked: after its form version's ``valid_until`` it is ``expired``;
when the form version now current for that country and language words the purpose differently
(another ``section_sha256``) it is ``reconsent_required``. Of several contributing states the most
severe wins: withdrawn > declined > reconsent_required > expired > granted.

Without a decision the status is ``pending``; but a student at or above the self-consent age who has
not decided themselves while a guardian granted (or they assented as a child) is
``reconsent_required``, and a student in the joint band who only assented as a child likewise. A
decline or withdrawal by the guardian stays until the student decides. An erased or restricted
subject is ``withdrawn``. A student whose country has no rule in force is ``pending``.

Teachers decide for themselves: their latest decision per purpose, with the same expiry and
form-change checks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BindParameter, DateTime, Integer, String, bindparam, select, text
from sqlalchemy.orm import Session

from consent.decisions.models import Status
from consent.forms.models import Purpose

CODES = {
    0: Status.pending,
    1: Status.granted,
    2: Status.expired,
    3: Status.reconsent_required,
    4: Status.declined,
    5: Status.withdrawn,
}
JIT_THRESHOLD = 200
"""Above this many subjects PostgreSQL's JIT compiler would kick in (see ``_run``)."""
CHAR_CODES = {str(code): status for code, status in CODES.items()}
STATUS_CODES = {status: code for code, status in CODES.items()}

# The state of one latest decision: 5 withdrawn, 4 declined, 2 expired grant, 3 grant under changed
# wording, 1 grant. Higher is more severe, which the combination below relies on.
_LATEST_STATE = """
    CASE WHEN k.choice = 'withdrawn' THEN 5
         WHEN k.choice = 'declined' THEN 4
         WHEN fc.changed = 1 THEN 3
         WHEN k.expires_at IS NOT NULL AND k.expires_at <= :t THEN 2
         ELSE 1 END
"""

# For every (form version, purpose): whether the version current at :t for the same country and
# language words the purpose differently. A few dozen rows, joined to the decisions by hash.
_FORM_CHANGE = """
cur_form AS (
    SELECT f.id, f.country_code, f.language FROM consent_form f
    WHERE f.published_at <= :t AND f.version = (
        SELECT MAX(f2.version) FROM consent_form f2
        WHERE f2.country_code = f.country_code AND f2.language = f.language AND f2.published_at <= :t)
),
form_change AS (
    SELECT dfp.form_id, dfp.purpose,
           CASE WHEN cfp.section_sha256 IS NOT NULL AND cfp.section_sha256 <> dfp.section_sha256
                THEN 1 ELSE 0 END AS changed
    FROM consent_form_purpose dfp
    JOIN consent_form df ON df.id = dfp.form_id
    LEFT JOIN cur_form cf ON cf.country_code = df.country_code AND cf.language = df.language
    LEFT JOIN consent_form_purpose cfp ON cfp.form_id = cf.id AND cfp.purpose = dfp.purpose
)"""

_STUDENT_SQL = """
WITH rule_now AS (
    SELECT r.id AS rule_id, r.country_code, r.self_consent_age, r.joint_consent_from_age,
           r.assent_from_age, r.guardians_required
    FROM consent_country_rule r
    WHERE r.id <> :exclude_rule AND r.effective_from = (
        SELECT MAX(r2.effective_from) FROM consent_country_rule r2
        WHERE r2.country_code = r.country_code AND r2.effective_from <= :d AND r2.id <> :exclude_rule)
),
chosen AS (
    SELECT s.id, s.subject_id, s.country_code, s.birth_year, s.birth_month, s.erased_at, s.restricted_at
    FROM consent_student s WHERE {subject_filter}
),
guardian_count AS (
    SELECT gl.student_id, COUNT(*) AS n FROM consent_guardianship gl
    JOIN chosen ON chosen.id = gl.student_id GROUP BY gl.student_id
),
subj AS (
    SELECT s.id, s.subject_id,
           CASE WHEN (s.erased_at IS NOT NULL AND s.erased_at <= :t)
                  OR (s.restricted_at IS NOT NULL AND s.restricted_at <= :t) THEN 1 ELSE 0 END AS blocked,
           CASE WHEN r.self_consent_age IS NULL THEN 0
                WHEN :y - s.birth_year - CASE WHEN :m <= s.birth_month THEN 1 ELSE 0 END
                     >= r.self_consent_age THEN 3
                WHEN r.joint_consent_from_age IS NOT NULL
                 AND :y - s.birth_year - CASE WHEN :m <= s.birth_month THEN 1 ELSE 0 END
                     >= r.joint_consent_from_age THEN 2
                ELSE 1 END AS regime,
           CASE WHEN r.assent_from_age IS NOT NULL
                 AND :y - s.birth_year - CASE WHEN :m <= s.birth_month THEN 1 ELSE 0 END
                     >= r.assent_from_age THEN 1 ELSE 0 END AS assent_needed,
           CASE WHEN r.guardians_required = 'all' THEN 1 ELSE 0 END AS all_guardians,
           COALESCE(gc.n, 0) AS n_guardians
    FROM chosen s
    LEFT JOIN rule_now r ON r.country_code = s.country_code
    LEFT JOIN guardian_count gc ON gc.student_id = s.id
),
{form_change},
ranked AS (
    SELECT d.student_id, d.purpose, d.decided_by, d.capacity, d.choice, d.expires_at, d.form_id,
           d.recorded_at, d.id,
           ROW_NUMBER() OVER (PARTITION BY d.student_id, d.purpose, d.decided_by, d.guardian_id, d.capacity
                              ORDER BY d.recorded_at DESC, d.id DESC) AS rn
    FROM consent_decision d
    JOIN chosen ON chosen.id = d.student_id
    LEFT JOIN consent_guardianship gs ON gs.student_id = d.student_id AND gs.guardian_id = d.guardian_id
    WHERE d.recorded_at <= :t AND (d.guardian_id IS NULL OR gs.guardian_id IS NOT NULL)
),
latest AS (
    SELECT k.student_id, k.purpose, k.decided_by, k.capacity, {latest_state} AS state,
           ROW_NUMBER() OVER (PARTITION BY k.student_id, k.purpose, k.decided_by
                              ORDER BY k.recorded_at DESC, k.id DESC) AS by_rank
    FROM ranked k
    JOIN form_change fc ON fc.form_id = k.form_id AND fc.purpose = k.purpose
    WHERE k.rn = 1
),
agg AS (
    SELECT student_id, purpose,
        MAX(CASE WHEN decided_by = 'guardian' AND by_rank = 1 THEN state END) AS g_latest,
        MAX(CASE WHEN decided_by = 'guardian' AND state = 5 THEN 1 ELSE 0 END) AS g_withdrawn,
        MAX(CASE WHEN decided_by = 'guardian' AND state = 4 THEN 1 ELSE 0 END) AS g_declined,
        SUM(CASE WHEN decided_by = 'guardian' AND state <= 3 THEN 1 ELSE 0 END) AS g_granted,
        MAX(CASE WHEN decided_by = 'guardian' AND state <= 3 THEN state ELSE 0 END) AS g_worst_grant,
        MAX(CASE WHEN decided_by = 'student' AND capacity = 'consent' THEN state END) AS s_consent,
        MAX(CASE WHEN decided_by = 'student' AND by_rank = 1 THEN state END) AS s_latest
    FROM latest GROUP BY student_id, purpose
),
cell AS (
    SELECT subj.id, subj.subject_id, subj.blocked, subj.regime, subj.assent_needed, p.code AS purpose,
        CASE WHEN agg.student_id IS NULL THEN 0
             WHEN subj.all_guardians = 0 THEN COALESCE(agg.g_latest, 0)
             WHEN agg.g_withdrawn = 1 THEN 5
             WHEN agg.g_declined = 1 THEN 4
             WHEN subj.n_guardians > 0 AND agg.g_granted >= subj.n_guardians THEN agg.g_worst_grant
             ELSE 0 END AS g,
        agg.s_consent AS s, agg.s_latest AS sa
    FROM subj CROSS JOIN consent_purpose p
    LEFT JOIN agg ON agg.student_id = subj.id AND agg.purpose = p.code
    WHERE p.code IN :purposes
),
final AS (
    SELECT subject_id, purpose,
        CASE WHEN blocked = 1 THEN 5
             WHEN regime = 0 THEN 0
             WHEN regime = 3 THEN CASE
                 WHEN s IS NOT NULL THEN s
                 WHEN g IN (4, 5) THEN g
                 WHEN g > 0 OR sa IS NOT NULL THEN 3
                 ELSE 0 END
             WHEN regime = 2 THEN CASE
                 WHEN g = 5 OR s = 5 THEN 5
                 WHEN g = 4 OR s = 4 THEN 4
                 WHEN g > 0 AND s IS NOT NULL THEN CASE WHEN g > s THEN g ELSE s END
                 WHEN g > 0 AND sa IS NOT NULL THEN 3
                 ELSE 0 END
             ELSE CASE
                 WHEN g IN (0, 4, 5) THEN g
                 WHEN assent_needed = 0 THEN g
                 WHEN sa IS NULL THEN 0
                 WHEN sa IN (4, 5) THEN sa
                 ELSE g END
        END AS code
    FROM cell
)
SELECT subject_id, {columns} FROM final GROUP BY subject_id
"""

_TEACHER_SQL = """
WITH chosen AS (
    SELECT s.id, s.subject_id,
           CASE WHEN (s.erased_at IS NOT NULL AND s.erased_at <= :t)
                  OR (s.restricted_at IS NOT NULL AND s.restricted_at <= :t) THEN 1 ELSE 0 END AS blocked
    FROM consent_teacher s WHERE {subject_filter}
),
{form_change},
ranked AS (
    SELECT d.teacher_id, d.purpose, d.choice, d.expires_at, d.form_id,
           ROW_NUMBER() OVER (PARTITION BY d.teacher_id, d.purpose
                              ORDER BY d.recorded_at DESC, d.id DESC) AS rn
    FROM consent_decision d JOIN chosen ON chosen.id = d.teacher_id
    WHERE d.recorded_at <= :t
),
latest AS (
    SELECT k.teacher_id, k.purpose, {latest_state} AS state
    FROM ranked k
    JOIN form_change fc ON fc.form_id = k.form_id AND fc.purpose = k.purpose
    WHERE k.rn = 1
),
final AS (
    SELECT chosen.subject_id, p.code AS purpose,
           CASE WHEN chosen.blocked = 1 THEN 5 ELSE COALESCE(latest.state, 0) END AS code
    FROM chosen CROSS JOIN consent_purpose p
    LEFT JOIN latest ON latest.teacher_id = chosen.id AND latest.purpose = p.code
    WHERE p.code IN :purposes
)
SELECT subject_id, {columns} FROM final GROUP BY subject_id
"""


@dataclass(frozen=True)
class StatusTable:
    """Statuses of many subjects at one instant: ``rows[subject_id][purpose]``."""

    at: datetime
    purposes: tuple[str, ...]
    rows: dict[str, dict[str, Status]]

    def consenting(self, purpose: str) -> set[str]:
        """The subjects whose status for ``purpose`` is ``granted``."""
        return {subject for subject, row in self.rows.items() if row[purpose] is Status.granted}


def all_purposes(session: Session) -> tuple[str, ...]:
    """Every purpose code, in display order."""
    return tuple(session.execute(select(Purpose.code).order_by(Purpose.position)).scalars())


def subject_filter(session: Session, subject_ids: Sequence[str] | None) -> tuple[str, Any]:
    """The WHERE clause on the subject table (aliased ``s``) and the value of ``:ids``."""
    if subject_ids is None:
        return "1 = 1", None
    if session.get_bind().dialect.name == "postgresql":
        # One text parameter split by the server: binding 18,000 array elements costs seconds.
        return "s.subject_id IN (SELECT unnest(string_to_array(:ids, ',')))", ",".join(subject_ids)
    return "s.subject_id IN (SELECT value FROM json_each(:ids))", json.dumps(list(subject_ids))


def probe_filter(session: Session, column: str, values: Sequence[str]) -> tuple[str, Any]:
    """``column`` among ``values`` as a WHERE clause for probing an index, and the value of ``:ids``.

    On PostgreSQL ``= ANY(array)`` from one text parameter: the planner knows how many values are
    asked about and probes the index in order, instead of guessing 200 and hashing a whole table
    (a batch of a file of millions of rows asks about 100,000). Values must not contain commas.
    """
    if session.get_bind().dialect.name == "postgresql":
        return f"{column} = ANY(string_to_array(:ids, ','))", ",".join(values)
    return f"{column} IN (SELECT value FROM json_each(:ids))", json.dumps(list(values))  # noqa: S608 - column is the caller's fixed name


def _run(
    session: Session,
    template: str,
    subject_ids: Sequence[str] | None,
    *,
    at: datetime,
    purposes: Sequence[str],
    exclude_rule: int,
) -> dict[str, dict[str, Status]]:
    where, ids = subject_filter(session, subject_ids)
    columns = ", ".join(f"MAX(CASE WHEN purpose = :p{i} THEN code END) AS c{i}" for i in range(len(purposes)))
    sql = template.format(
        subject_filter=where, form_change=_FORM_CHANGE, latest_state=_LATEST_STATE, columns=columns
    )
    typed: list[BindParameter[Any]] = [
        bindparam("t", type_=DateTime(timezone=True)),
        bindparam("purposes", expanding=True, type_=String()),
    ]
    if ":exclude_rule" in sql:
        typed.append(bindparam("exclude_rule", type_=Integer()))
    statement = text(sql).bindparams(*typed)
    params: dict[str, Any] = {
        "t": at,
        "d": at.date(),
        "y": at.year,
        "m": at.month,
        "purposes": list(purposes),
        **{f"p{i}": purpose for i, purpose in enumerate(purposes)},
    }
    if ids is not None:
        params["ids"] = ids
    if ":exclude_rule" in sql:
        params["exclude_rule"] = exclude_rule
    many = subject_ids is None or len(subject_ids) > JIT_THRESHOLD
    postgres = many and session.get_bind().dialect.name == "postgresql"
    if postgres:
        # The planner's cost for 18,000 subjects crosses PostgreSQL's JIT threshold, and compiling
        # this statement takes seconds while running it takes a tenth of one. Off for this
        # statement only; the transaction's own setting is restored after.
        previous = session.execute(text("SELECT current_setting('jit')")).scalar_one()
        session.execute(text("SELECT set_config('jit', 'off', true)"))
    result: dict[str, dict[str, Status]] = {}
    try:
        for row in session.execute(statement, params):
            result[row[0]] = {purpose: CODES[row[i + 1]] for i, purpose in enumerate(purposes)}
    finally:
        if postgres:
            session.execute(text("SELECT set_config('jit', :value, true)"), {"value": previous})
    return result


def _instant(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError("the instant must carry a time zone")
    return at.astimezone(UTC)


def derive_student_statuses(
    session: Session,
    subject_ids: Sequence[str] | None = None,
    *,
    at: datetime | None = None,
    purposes: Sequence[str] | None = None,
    exclude_rule: int = 0,
) -> StatusTable:
    """Statuses derived from the decisions, ignoring the cache (all students when ``subject_ids`` is None).

    ``exclude_rule`` computes as if that rule version had not been recorded (to measure its impact).
    """
    moment = _instant(at)
    chosen = tuple(purposes) if purposes else all_purposes(session)
    rows = _run(session, _STUDENT_SQL, subject_ids, at=moment, purposes=chosen, exclude_rule=exclude_rule)
    return StatusTable(at=moment, purposes=chosen, rows=rows)


def student_statuses(
    session: Session,
    subject_ids: Sequence[str] | None = None,
    *,
    at: datetime | None = None,
    purposes: Sequence[str] | None = None,
) -> StatusTable:
    """Statuses of these students (all students when None) at ``at`` (default now).

    Answers from ``consent_status_cache`` where a row covers the instant, and derives the rest from
    the decisions. Unknown ids are absent from the answer.
    """
    from consent.decisions import status_cache

    moment = _instant(at)
    every = all_purposes(session)
    chosen = tuple(purposes) if purposes else every
    cached, misses = status_cache.lookup(session, subject_ids, at=moment, purposes=every)
    positions = [every.index(p) for p in chosen] if chosen != every else None
    rows: dict[str, dict[str, Status]] = {}
    for subject, codes in cached.items():
        if positions is None:
            rows[subject] = dict(zip(chosen, [CHAR_CODES[c] for c in codes], strict=True))
        else:
            rows[subject] = {p: CHAR_CODES[codes[i]] for p, i in zip(chosen, positions, strict=True)}
    if misses:
        rows.update(derive_student_statuses(session, misses, at=moment, purposes=chosen).rows)
    return StatusTable(at=moment, purposes=chosen, rows=rows)


def teacher_statuses(
    session: Session,
    subject_ids: Sequence[str] | None = None,
    *,
    at: datetime | None = None,
    purposes: Sequence[str] | None = None,
) -> StatusTable:
    """Statuses of these teachers (all when None) at ``at`` (default now)."""
    moment = _instant(at)
    chosen = tuple(purposes) if purposes else all_purposes(session)
    rows = _run(session, _TEACHER_SQL, subject_ids, at=moment, purposes=chosen, exclude_rule=0)
    return StatusTable(at=moment, purposes=chosen, rows=rows)


def statuses(
    session: Session,
    subject_ids: Sequence[str],
    *,
    at: datetime | None = None,
    purposes: Sequence[str] | None = None,
) -> StatusTable:
    """Statuses of students and teachers by subject id, in one table; unknown ids are absent."""
    students = student_statuses(session, subject_ids, at=at, purposes=purposes)
    missing = [s for s in subject_ids if s not in students.rows]
    if missing:
        teachers = teacher_statuses(session, missing, at=students.at, purposes=students.purposes)
        students.rows.update(teachers.rows)
    return students
