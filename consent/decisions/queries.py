"""Read side for staff: decision history, one subject's status explained, batches, marks, impacts."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from access.principal import Principal
from consent import service as rules
from consent.decisions import ages, pseudonyms, repository
from consent.decisions.exceptions import SubjectNotFound
from consent.decisions.models import Capacity, Choice, DecidedBy, Decision
from consent.decisions.schemas import (
    ReconsentMarkRead,
    RuleImpactRead,
    StatusBatch,
    StatusBatchRequest,
    SubjectStatus,
    WithdrawalRead,
)
from consent.decisions.service import RecordedDecision, batch_status
from consent.decisions.status import student_statuses, teacher_statuses
from consent.exceptions import CountryRuleNotFound
from consent.rosters.models import Student, Teacher
from consent.scope import in_scope
from infra.keys import KeyBackend


def _subject(session: Session, principal: Principal, subject_id: str) -> Student | Teacher:
    subject: Student | Teacher | None = repository.find_student(session, subject_id)
    if subject is None:
        subject = repository.find_teacher(session, subject_id)
    if subject is None or not in_scope(principal, subject.country_code, subject.school_code):
        raise SubjectNotFound(subject_id)
    return subject


def decision_history(session: Session, principal: Principal, subject_id: str) -> list[RecordedDecision]:
    """The subject's submissions, oldest first, each with its choices per purpose."""
    subject = _subject(session, principal, subject_id)
    if isinstance(subject, Student):
        rows = repository.history(session, student_id=subject.id)
        kind = "student"
    else:
        rows = repository.history(session, teacher_id=subject.id)
        kind = "teacher"
    guardians = repository.guardian_uuids(session, [r.guardian_id for r in rows if r.guardian_id is not None])
    events: dict[str, list[Decision]] = defaultdict(list)
    for row in rows:
        events[row.event_id].append(row)
    result = []
    for event in events.values():
        first = event[0]
        result.append(
            RecordedDecision(
                event_id=first.event_id,
                subject_id=subject_id,
                subject_kind=kind,
                decided_by=DecidedBy(first.decided_by),
                guardian_id=guardians.get(first.guardian_id) if first.guardian_id is not None else None,
                capacity=Capacity(first.capacity),
                form_id=first.form_id,
                text_sha256=first.text_sha256,
                choices={row.purpose: Choice(row.choice) for row in event},
                channel=first.channel,
                recorded_at=first.recorded_at,
                replayed=False,
            )
        )
    return result


def subject_status(
    session: Session, principal: Principal, subject_id: str, *, at: datetime | None = None
) -> SubjectStatus:
    """One subject's statuses, with the age, regime and rule version behind them."""
    subject = _subject(session, principal, subject_id)
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    if isinstance(subject, Teacher):
        table = teacher_statuses(session, [subject_id], at=moment)
        return SubjectStatus(
            subject_id=subject_id,
            subject_kind="teacher",
            at=moment,
            statuses=table.rows[subject_id],
            country=subject.country_code,
            age=None,
            regime=None,
            rule_id=None,
        )
    table = student_statuses(session, [subject_id], at=moment)
    age = ages.age_on(subject.birth_year, subject.birth_month, moment.date())
    try:
        rule = rules.rule_for(session, subject.country_code, moment.date())
        regime, rule_id = ages.regime(rule, age).value, rule.id
    except CountryRuleNotFound:
        regime, rule_id = None, None
    return SubjectStatus(
        subject_id=subject_id,
        subject_kind="student",
        at=moment,
        statuses=table.rows[subject_id],
        country=subject.country_code,
        age=age,
        regime=regime,
        rule_id=rule_id,
    )


def batch(session: Session, principal: Principal, keys: KeyBackend, body: StatusBatchRequest) -> StatusBatch:
    """Statuses by subject id or by pseudonym; the answer uses the identifiers the caller gave."""
    if body.subject_ids is not None:
        table, unknown = batch_status(
            session, principal, body.subject_ids, at=body.at, purposes=body.purposes
        )
        return StatusBatch(at=table.at, purposes=list(table.purposes), statuses=table.rows, unknown=unknown)
    assert body.domain is not None
    assert body.pseudonyms is not None
    mapping = pseudonyms.resolve(session, body.domain, body.pseudonyms)
    table, unknown_ids = batch_status(
        session, principal, list(mapping.values()), at=body.at, purposes=body.purposes
    )
    hidden = set(unknown_ids)
    statuses = {p: table.rows[s] for p, s in mapping.items() if s not in hidden and s in table.rows}
    unknown = [p for p in dict.fromkeys(body.pseudonyms) if p not in statuses]
    return StatusBatch(at=table.at, purposes=list(table.purposes), statuses=statuses, unknown=unknown)


def reconsent(
    session: Session, principal: Principal, *, open_only: bool, due_before: date | None, limit: int
) -> list[ReconsentMarkRead]:
    """Re-consent marks in the principal's scope."""
    return [
        ReconsentMarkRead(
            subject_id=subject_id,
            reason=mark.reason,
            due_on=mark.due_on,
            created_at=mark.created_at,
            invited_at=mark.invited_at,
            resolved_at=mark.resolved_at,
        )
        for mark, subject_id in repository.reconsent_marks(
            session, principal, open_only=open_only, due_before=due_before, limit=limit
        )
    ]


def impacts(session: Session, rule_id: int) -> list[RuleImpactRead]:
    """The students a rule version affects."""
    return [
        RuleImpactRead(
            rule_id=impact.rule_id,
            country=impact.country_code,
            subject_id=subject_id,
            effective_from=impact.effective_from,
            changes=impact.changes,
        )
        for impact, subject_id in repository.rule_impacts(session, rule_id)
    ]


def withdrawals(session: Session, *, limit: int) -> list[WithdrawalRead]:
    """Withdrawal events, newest first."""
    return [
        WithdrawalRead(
            id=row.id,
            event_id=row.event_id,
            subject_id=row.subject_id,
            subject_kind=row.subject_kind,
            purposes=list(row.purposes),
            reason=row.reason,
            effective_at=row.effective_at,
            handled=dict(row.handled),
        )
        for row in repository.withdrawals(session, limit=limit)
    ]
