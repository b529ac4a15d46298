"""Recording decisions, and reading statuses for staff.

A decision is checked against everything the law and the form ask before anything is written:

* the form version is the one now current for the subject's country and that language (a newer
  version means the person read an outdated text: 409 ``form_superseded``), and the SHA-256 given
  is that of the form's text for the decider's audience (guardian, child, adult);
* every purpose is on the form, and a submission that is not only withdrawals answers every
  required purpose;
* the decider fits the subject and the rule in force today: a listed guardian (not once the
  student consents alone), the student (their assent below the joint band, from the rule's assent
  age; their consent from the joint band), or the teacher for themselves.

Decisions on one subject are serialised by locking the subject's row, so of a withdrawal and a grant
submitted together one lands first and the other second, and the later one is the status. A
submission carrying an idempotency key already used returns the first recording.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, Sha256Hex, register_action
from access.audit.service import Actor, record
from access.principal import Principal
from consent import service as rules
from consent.decisions import ages, repository, status_cache
from consent.decisions.exceptions import DecisionConflict, InvalidDecision, SubjectNotFound
from consent.decisions.models import Capacity, Choice, DecidedBy, Decision, ReconsentMark
from consent.decisions.schemas import DecisionCreate
from consent.decisions.status import StatusTable, all_purposes, student_statuses, teacher_statuses
from consent.decisions.withdrawals import WithdrawalReason, emit_withdrawal
from consent.exceptions import CountryRuleNotFound
from consent.forms.models import Audience, ConsentForm
from consent.rosters.models import Student, Teacher
from consent.scope import in_scope
from infra.db import as_utc
from infra.logging import get_logger

log = get_logger(__name__)

FAMILY_LINK = "family-link"
"""``recorded_by`` of decisions made on the family pages."""


class DecisionDetails(Details):
    """Ledger details of a decision: ids, hashes and choices; never a name."""

    event_id: Identifier
    subject_kind: str
    decided_by: DecidedBy
    guardian_id: Identifier | None = None
    capacity: Capacity
    form_id: int
    text_sha256: Sha256Hex
    choices: dict[str, Choice]
    channel: str


DECISION_RECORDED = register_action("consent.decision_recorded", DecisionDetails)

AUDIENCE = {
    DecidedBy.guardian: Audience.guardian,
    DecidedBy.student: Audience.child,
    DecidedBy.teacher: Audience.adult,
}


@dataclass(frozen=True)
class RecordedDecision:
    """The outcome of a submission."""

    event_id: str
    subject_id: str
    subject_kind: str
    decided_by: DecidedBy
    guardian_id: str | None
    capacity: Capacity
    form_id: int
    text_sha256: str
    choices: dict[str, Choice]
    channel: str
    recorded_at: datetime
    replayed: bool


def _replay(
    session: Session, rows: list[Decision], data: DecisionCreate, subject: Student | Teacher
) -> RecordedDecision:
    first = rows[0]
    kind = "student" if isinstance(subject, Student) else "teacher"
    recorded_for = first.student_id if kind == "student" else first.teacher_id
    guardian = (
        repository.guardian_uuids(session, [first.guardian_id]).get(first.guardian_id)
        if first.guardian_id is not None
        else None
    )
    same = (
        first.form_id == data.form_id
        and first.decided_by == data.decided_by.value
        and first.text_sha256 == data.text_sha256
        and {row.purpose: Choice(row.choice) for row in rows} == dict(data.choices)
        and recorded_for == subject.id
        and guardian == data.guardian_id
    )
    if not same:
        raise DecisionConflict(
            "this idempotency key was already used for a different submission", code="idempotency_key_reused"
        )
    return RecordedDecision(
        event_id=first.event_id,
        subject_id=subject.subject_id,
        subject_kind=kind,
        decided_by=DecidedBy(first.decided_by),
        guardian_id=guardian,
        capacity=Capacity(first.capacity),
        form_id=first.form_id,
        text_sha256=first.text_sha256,
        choices={row.purpose: Choice(row.choice) for row in rows},
        channel=first.channel,
        recorded_at=first.recorded_at,
        replayed=True,
    )


def _insert(session: Session, rows: list[Decision], idempotency_key: str | None) -> list[Decision]:
    """Insert ``rows``; if a submission with the same key committed meanwhile, its rows instead.

    The subject's lock does not cover the key: the same key sent for another subject at the same
    time waits on the key's unique index, then collides; that is a repeated key, not a crash.
    """
    try:
        with session.begin_nested():
            session.add_all(rows)
            session.flush()
    except IntegrityError:
        earlier = repository.event_rows(session, idempotency_key) if idempotency_key else []
        if not earlier:
            raise
        return earlier
    return []


def _check_form(
    session: Session, form: ConsentForm | None, data: DecisionCreate, country: str, now: datetime
) -> ConsentForm:
    if form is None:
        raise InvalidDecision("form_id", f"no form version {data.form_id}", code="unknown_form")
    if form.country_code != country:
        raise InvalidDecision(
            "form_id",
            f"form version {form.id} is for {form.country_code}, the subject is in {country}",
            code="form_wrong_country",
        )
    current = repository.current_form(session, form.country_code, form.language, now)
    if current is None:
        raise DecisionConflict(f"form version {form.id} was not published yet", code="form_not_published")
    if current.id != form.id:
        raise DecisionConflict(
            f"form version {form.version} was superseded by version {current.version} (id {current.id}); "
            "show the current text and ask again",
            code="form_superseded",
        )
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


def _student_capacity(
    session: Session, student: Student, data: DecisionCreate, now: datetime
) -> tuple[Capacity, int | None]:
    """The capacity of the decider and the guardian row id, or a conflict with the rule in force."""
    try:
        rule = rules.rule_for(session, student.country_code, now.date())
    except CountryRuleNotFound:
        raise DecisionConflict(
            f"no consent rule is in force for {student.country_code}", code="no_rule_in_force"
        ) from None
    age = ages.age_on(student.birth_year, student.birth_month, now.date())
    regime = ages.regime(rule, age)
    if data.decided_by is DecidedBy.teacher:
        raise InvalidDecision("decided_by", "a teacher decides only for themselves", code="wrong_decider")
    if data.decided_by is DecidedBy.guardian:
        if regime is ages.Regime.self:
            raise DecisionConflict(
                f"at {age} the student consents alone in {student.country_code}; a guardian's decision "
                "no longer counts",
                code="student_decides_alone",
            )
        guardian = repository.listed_guardian(session, student.id, data.guardian_id or "")
        if guardian is None:
            raise InvalidDecision(
                "guardian_id", "is not a guardian listed for this student", code="guardian_not_listed"
            )
        if guardian.erased_at is not None:
            raise DecisionConflict("this guardian's identity was erased", code="guardian_erased")
        return Capacity.consent, guardian.id
    if regime is ages.Regime.guardian:
        if not ages.assent_needed(rule, age):
            raise DecisionConflict(
                f"at {age} a student in {student.country_code} is not asked: the guardians decide",
                code="too_young_to_decide",
            )
        return Capacity.assent, None
    return Capacity.consent, None


def _lock_subject(
    session: Session, subject_id: str, scope: Principal | None
) -> tuple[Student | None, Teacher | None]:
    """The student or the teacher, locked; SubjectNotFound when neither, or outside ``scope``."""
    student = repository.lock_student(session, subject_id)
    teacher = repository.lock_teacher(session, subject_id) if student is None else None
    subject = student or teacher
    if subject is None or (
        scope is not None and not in_scope(scope, subject.country_code, subject.school_code)
    ):
        raise SubjectNotFound(subject_id)
    return student, teacher


def record_decision(
    session: Session,
    actor: Actor,
    data: DecisionCreate,
    *,
    scope: Principal | None = None,
    now: datetime | None = None,
) -> RecordedDecision:
    """Check and record one submission; with ``scope`` the subject must be in that staff member's scope."""
    student, teacher = _lock_subject(session, data.subject_id, scope)
    kind = "student" if student is not None else "teacher"
    subject: Student | Teacher = student or teacher  # type: ignore[assignment]
    # The clock is read after the lock, and never goes back for one subject (servers' clocks may
    # differ slightly): a decision waiting for another one is recorded after it.
    moment = now or datetime.now(UTC)
    previous = repository.last_recorded(
        session, student_id=student.id if student else None, teacher_id=teacher.id if teacher else None
    )
    if now is None and previous is not None and as_utc(previous) >= moment:
        moment = as_utc(previous) + timedelta(microseconds=1)
    if data.idempotency_key is not None:
        earlier = repository.event_rows(session, data.idempotency_key)
        if earlier:
            return _replay(session, earlier, data, subject)
    if subject.erased_at is not None:
        raise DecisionConflict("this subject's identity was erased", code="subject_erased")
    form = _check_form(session, session.get(ConsentForm, data.form_id), data, subject.country_code, moment)
    guardian_row: int | None = None
    if student is not None:
        capacity, guardian_row = _student_capacity(session, student, data, moment)
    elif data.decided_by is not DecidedBy.teacher:
        raise InvalidDecision("decided_by", "a teacher decides for themselves", code="wrong_decider")
    else:
        capacity = Capacity.consent
    event_id = str(uuid.uuid4())
    expires_at = datetime.combine(form.valid_until, time.min, tzinfo=UTC) if form.valid_until else None
    rows = [
        Decision(
            event_id=event_id,
            student_id=student.id if student is not None else None,
            teacher_id=teacher.id if teacher is not None else None,
            decided_by=data.decided_by.value,
            guardian_id=guardian_row,
            capacity=capacity.value,
            form_id=form.id,
            text_sha256=data.text_sha256,
            purpose=purpose,
            choice=choice.value,
            channel=data.channel.value,
            recorded_at=moment,
            recorded_by=actor.id,
            expires_at=expires_at,
            idempotency_key=data.idempotency_key,
        )
        for purpose, choice in sorted(data.choices.items())
    ]
    earlier = _insert(session, rows, data.idempotency_key)
    if earlier:
        return _replay(session, earlier, data, subject)
    record(
        session,
        actor,
        DECISION_RECORDED,
        target_type=kind,
        target_id=data.subject_id,
        details=DecisionDetails(
            event_id=event_id,
            subject_kind=kind,
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
            subject_kind=kind,
            subject_id=data.subject_id,
            purposes=withdrawn,
            reason=WithdrawalReason.withdrawn,
            effective_at=moment,
            event_id=event_id,
        )
    if student is not None:
        status_cache.refresh(session, [student.id], at=moment)
    if student is not None and data.decided_by is DecidedBy.student and capacity is Capacity.consent:
        session.execute(
            update(ReconsentMark)
            .where(ReconsentMark.student_id == student.id, ReconsentMark.resolved_at.is_(None))
            .values(resolved_at=moment)
        )
    log.info("consent.decision_recorded", event_id=event_id, subject=data.subject_id, kind=kind)
    return RecordedDecision(
        event_id=event_id,
        subject_id=data.subject_id,
        subject_kind=kind,
        decided_by=data.decided_by,
        guardian_id=data.guardian_id,
        capacity=capacity,
        form_id=form.id,
        text_sha256=data.text_sha256,
        choices=dict(data.choices),
        channel=data.channel.value,
        recorded_at=moment,
        replayed=False,
    )


def batch_status(
    session: Session,
    principal: Principal,
    subject_ids: list[str],
    *,
    at: datetime | None = None,
    purposes: list[str] | None = None,
) -> tuple[StatusTable, list[str]]:
    """Statuses of the subjects in the principal's scope; the others are returned as unknown."""
    if purposes:
        known = set(all_purposes(session))
        bad = sorted(set(purposes) - known)
        if bad:
            raise InvalidDecision("purposes", f"unknown purposes: {', '.join(bad)}", code="unknown_purpose")
    wanted = list(dict.fromkeys(subject_ids))
    students = sorted(repository.scoped_student_ids(session, principal, wanted))
    table = student_statuses(session, students, at=at, purposes=purposes)
    rest = [s for s in wanted if s not in table.rows]
    teachers = sorted(repository.scoped_teacher_ids(session, principal, rest))
    if teachers:
        table.rows.update(teacher_statuses(session, teachers, at=table.at, purposes=table.purposes).rows)
    unknown = [s for s in wanted if s not in table.rows]
    return table, unknown
