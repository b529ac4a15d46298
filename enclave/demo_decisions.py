"""The demo families' consent decisions, recorded fast enough for a start-up under a minute.

``consent.decisions.service.record_decision`` runs about twenty queries per submission (lock, form,
rule, guardian, insert, status-cache refresh), some 30 submissions a second on SQLite: 25,000
decisions would take a quarter of an hour. So the demo records a sample of each country's families
one by one through ``record_decision`` (the API's own path), and the rest in bulk, one transaction
per country, with the **same checks** made in memory against the same rows:

* the form version is current for its country and language, the text hash is the decider's
  audience's, every purpose is on the form and the required ones are answered;
* the decider fits the student and the rule in force today (``consent.decisions.ages``): a listed
  guardian (not once the student consents alone), the student's assent below the joint band (from
  the rule's assent age), the student's consent from the joint band;

and the same effects: one ``consent.decision_recorded`` ledger entry per decision and a withdrawal
event for each withdrawal. The students' status-cache rows are invalidated rather than refreshed
one by one (statuses are derived until the periodic refresh fills them again).
A check failing raises the service's own exception, as the API would answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from access.audit.service import Actor, record
from consent import service as rules
from consent.decisions import ages, status_cache
from consent.decisions.exceptions import DecisionConflict, InvalidDecision
from consent.decisions.models import Capacity, Choice, DecidedBy, Decision
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import AUDIENCE, DECISION_RECORDED, DecisionDetails, record_decision
from consent.decisions.withdrawals import WithdrawalReason, emit_withdrawal
from consent.forms.models import ConsentForm
from consent.forms.service import current_form, list_forms
from consent.models import CountryRule
from consent.rosters.models import Guardian, Guardianship, Student

DECISIONS: Table = Decision.__table__  # type: ignore[assignment]
"""Written with Core: the ORM's bulk path costs seconds of Python per 100,000 rows."""


@dataclass(frozen=True)
class Submission:
    """One person's decision, as the family pages or a steward would send it."""

    actor: Actor
    data: DecisionCreate
    scope: Any = None
    """The steward's principal for paper forms they enter (the subject must be in their scope)."""


@dataclass
class CountryBook:
    """What the checks need of one country, read once: rule, current forms, students, guardians."""

    country: str
    rule: CountryRule
    forms: dict[int, ConsentForm]
    current: dict[str, int]
    """Language -> id of the form version current now."""
    students: dict[str, tuple[int, int, int, str | None]]
    """subject_id -> (row id, birth year, birth month, erased marker)."""
    guardians: dict[int, dict[str, tuple[int, bool]]] = field(default_factory=dict)
    """Student row id -> guardian uuid -> (guardian row id, erased)."""


def country_book(session: Session, country: str, now: datetime) -> CountryBook | None:
    """The country's rule, forms, students and guardians; None when no form is published there."""
    forms: dict[int, ConsentForm] = {}
    current: dict[str, int] = {}
    for language in sorted({f.language for f in list_forms(session, country=country)}):
        form = current_form(session, country, language, now)
        if form is not None:
            forms[form.id] = form
            current[language] = form.id
    if not forms:
        return None
    students = {
        subject: (row_id, year, month, "erased" if erased else None)
        for row_id, subject, year, month, erased in session.execute(
            select(Student.id, Student.subject_id, Student.birth_year, Student.birth_month, Student.erased_at)
            .where(Student.country_code == country)
            .order_by(Student.id)
        ).all()
    }
    book = CountryBook(country, rules.rule_for(session, country, now.date()), forms, current, students)
    for student_id, guardian_uuid, guardian_row, erased in session.execute(
        select(Guardianship.student_id, Guardian.guardian_id, Guardian.id, Guardian.erased_at)
        .join(Guardian, Guardian.id == Guardianship.guardian_id)
        .join(Student, Student.id == Guardianship.student_id)
        .where(Student.country_code == country)
        .order_by(Guardianship.student_id, Guardian.id)
    ).all():
        book.guardians.setdefault(student_id, {})[guardian_uuid] = (guardian_row, erased is not None)
    return book


def _check_form(book: CountryBook, data: DecisionCreate) -> ConsentForm:
    """``record_decision``'s form checks, against the forms read once."""
    form = book.forms.get(data.form_id)
    if form is None:
        raise InvalidDecision(
            "form_id", f"form version {data.form_id} is not current in {book.country}", code="unknown_form"
        )
    if book.current.get(form.language) != form.id:
        raise DecisionConflict(f"form version {form.version} was superseded", code="form_superseded")
    audience = AUDIENCE[data.decided_by]
    text = next((t for t in form.texts if t.audience == audience.value), None)
    if text is None or text.sha256 != data.text_sha256:
        raise InvalidDecision(
            "text_sha256",
            f"is not the SHA-256 of this form version's {audience.value} text",
            code="text_mismatch",
        )
    on_form = {p.purpose: p for p in form.purposes}
    unknown = sorted(set(data.choices) - set(on_form))
    if unknown:
        raise InvalidDecision(
            "choices", f"not on this form: {', '.join(unknown)}", code="purpose_not_on_form"
        )
    only_withdrawals = all(choice is Choice.withdrawn for choice in data.choices.values())
    missing = sorted(p for p, fp in on_form.items() if fp.required and p not in data.choices)
    if missing and not only_withdrawals:
        raise InvalidDecision(
            "choices",
            f"required purposes not answered: {', '.join(missing)}",
            code="required_purpose_missing",
        )
    return form


def _capacity(book: CountryBook, data: DecisionCreate, moment: datetime) -> tuple[int, Capacity, int | None]:
    """``record_decision``'s decider checks: the student's row id, the capacity and the guardian row."""
    found = book.students.get(data.subject_id)
    if found is None:
        raise InvalidDecision("subject_id", "is not a student of this country", code="unknown_subject")
    row_id, year, month, erased = found
    if erased:
        raise DecisionConflict("this subject's identity was erased", code="subject_erased")
    age = ages.age_on(year, month, moment.date())
    regime = ages.regime(book.rule, age)
    if data.decided_by is DecidedBy.teacher:
        raise InvalidDecision("decided_by", "a teacher decides only for themselves", code="wrong_decider")
    if data.decided_by is DecidedBy.guardian:
        if regime is ages.Regime.self:
            raise DecisionConflict(
                f"at {age} the student consents alone in {book.country}", code="student_decides_alone"
            )
        guardian = book.guardians.get(row_id, {}).get(data.guardian_id or "")
        if guardian is None:
            raise InvalidDecision(
                "guardian_id", "is not a guardian listed for this student", code="guardian_not_listed"
            )
        if guardian[1]:
            raise DecisionConflict("this guardian's identity was erased", code="guardian_erased")
        return row_id, Capacity.consent, guardian[0]
    if regime is ages.Regime.guardian:
        if not ages.assent_needed(book.rule, age):
            raise DecisionConflict(
                f"at {age} a student in {book.country} is not asked: the guardians decide",
                code="too_young_to_decide",
            )
        return row_id, Capacity.assent, None
    return row_id, Capacity.consent, None


def record_one_by_one(session: Session, submissions: list[Submission], advance: Callable[[int], None]) -> int:
    """Record submissions through ``record_decision`` itself, one at a time."""
    for submission in submissions:
        record_decision(session, submission.actor, submission.data, scope=submission.scope)
        advance(1)
    return len(submissions)


def record_in_bulk(
    session: Session, book: CountryBook, submissions: list[Submission], advance: Callable[[int], None]
) -> int:
    """Check every submission as ``record_decision`` does, then write them in one statement."""
    from access.principal import Principal
    from consent.scope import in_scope

    moment = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    touched: set[int] = set()
    for index, submission in enumerate(submissions):
        data = submission.data
        scope = submission.scope
        if isinstance(scope, Principal) and not in_scope(scope, book.country):
            raise InvalidDecision("subject_id", "is outside your scope", code="outside_scope")
        at = moment + timedelta(microseconds=index)  # one subject's decisions keep their order
        form = _check_form(book, data)
        row_id, capacity, guardian_row = _capacity(book, data, at)
        event_id = str(uuid.uuid4())
        expires_at = datetime.combine(form.valid_until, time.min, tzinfo=UTC) if form.valid_until else None
        rows.extend(
            {
                "event_id": event_id,
                "student_id": row_id,
                "teacher_id": None,
                "decided_by": data.decided_by.value,
                "guardian_id": guardian_row,
                "capacity": capacity.value,
                "form_id": form.id,
                "text_sha256": data.text_sha256,
                "purpose": purpose,
                "choice": choice.value,
                "channel": data.channel.value,
                "recorded_at": at,
                "recorded_by": submission.actor.id,
                "expires_at": expires_at,
                "idempotency_key": None,
            }
            for purpose, choice in sorted(data.choices.items())
        )
        record(
            session,
            submission.actor,
            DECISION_RECORDED,
            target_type="student",
            target_id=data.subject_id,
            details=DecisionDetails(
                event_id=event_id,
                subject_kind="student",
                decided_by=data.decided_by,
                guardian_id=data.guardian_id,
                capacity=capacity,
                form_id=form.id,
                text_sha256=data.text_sha256,
                choices=dict(data.choices),
                channel=data.channel.value,
            ),
        )
        withdrawn = [purpose for purpose, choice in data.choices.items() if choice is Choice.withdrawn]
        if withdrawn:
            emit_withdrawal(
                session,
                subject_kind="student",
                subject_id=data.subject_id,
                purposes=withdrawn,
                reason=WithdrawalReason.withdrawn,
                effective_at=at,
                event_id=event_id,
            )
        touched.add(row_id)
        advance(1)
    for start in range(0, len(rows), 5_000):
        session.execute(insert(DECISIONS), rows[start : start + 5_000])
    # Their cached statuses are dropped, as the cache allows for writers: until the periodic
    # refresh (every 10 minutes) they are derived from the decisions when asked for.
    status_cache.invalidate(session, sorted(touched))
    return len(submissions)
