"""Queries of the decisions sub-area; those a steward can trigger narrow through ``consent.scope``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access.principal import Principal
from consent.decisions.models import Decision, ReconsentMark, RuleImpact, Withdrawal
from consent.forms.models import ConsentForm
from consent.rosters.models import Guardian, Guardianship, Student, Teacher
from consent.scope import scope_filter


def lock_student(session: Session, subject_id: str) -> Student | None:
    """The student, locked until the transaction ends: decisions on one subject happen one at a time."""
    return session.execute(
        select(Student).where(Student.subject_id == subject_id).with_for_update()
    ).scalar_one_or_none()


def lock_teacher(session: Session, subject_id: str) -> Teacher | None:
    """The teacher, locked like ``lock_student``."""
    return session.execute(
        select(Teacher).where(Teacher.subject_id == subject_id).with_for_update()
    ).scalar_one_or_none()


def find_student(session: Session, subject_id: str) -> Student | None:
    """The student with this subject id."""
    return session.execute(select(Student).where(Student.subject_id == subject_id)).scalar_one_or_none()


def find_teacher(session: Session, subject_id: str) -> Teacher | None:
    """The teacher with this subject id."""
    return session.execute(select(Teacher).where(Teacher.subject_id == subject_id)).scalar_one_or_none()


def listed_guardian(session: Session, student_id: int, guardian_uuid: str) -> Guardian | None:
    """The guardian with this id if they are listed for the student."""
    return session.execute(
        select(Guardian)
        .join(Guardianship, Guardianship.guardian_id == Guardian.id)
        .where(Guardianship.student_id == student_id, Guardian.guardian_id == guardian_uuid)
    ).scalar_one_or_none()


def current_form(session: Session, country: str, language: str, at: datetime) -> ConsentForm | None:
    """The latest version of a country's form in a language published at or before ``at``."""
    return session.execute(
        select(ConsentForm)
        .where(
            ConsentForm.country_code == country,
            ConsentForm.language == language,
            ConsentForm.published_at <= at,
        )
        .order_by(ConsentForm.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def last_recorded(session: Session, *, student_id: int | None, teacher_id: int | None) -> datetime | None:
    """When the subject's latest decision was recorded."""
    query = select(func.max(Decision.recorded_at))
    if student_id is not None:
        query = query.where(Decision.student_id == student_id)
    else:
        query = query.where(Decision.teacher_id == teacher_id)
    return session.execute(query).scalar_one()


def event_rows(session: Session, idempotency_key: str) -> list[Decision]:
    """The decisions recorded under a client's idempotency key."""
    return list(
        session.execute(
            select(Decision).where(Decision.idempotency_key == idempotency_key).order_by(Decision.id)
        ).scalars()
    )


def history(
    session: Session, *, student_id: int | None = None, teacher_id: int | None = None
) -> list[Decision]:
    """Every decision on one subject, oldest first."""
    query = select(Decision).order_by(Decision.recorded_at, Decision.id)
    if student_id is not None:
        query = query.where(Decision.student_id == student_id)
    else:
        query = query.where(Decision.teacher_id == teacher_id)
    return list(session.execute(query).scalars())


def guardian_uuids(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """Public guardian ids by row id."""
    if not ids:
        return {}
    query = select(Guardian.id, Guardian.guardian_id).where(Guardian.id.in_(set(ids)))
    return dict(session.execute(query).all())


def scoped_student_ids(session: Session, principal: Principal, subject_ids: Sequence[str]) -> set[str]:
    """Those of ``subject_ids`` that are students the principal may see."""
    found: set[str] = set()
    chunk = 5_000
    for start in range(0, len(subject_ids), chunk):
        part = subject_ids[start : start + chunk]
        found.update(
            session.execute(
                select(Student.subject_id).where(
                    Student.subject_id.in_(part),
                    scope_filter(principal, Student.country_code, Student.school_code),
                )
            ).scalars()
        )
    return found


def scoped_teacher_ids(session: Session, principal: Principal, subject_ids: Sequence[str]) -> set[str]:
    """Those of ``subject_ids`` that are teachers the principal may see."""
    if not subject_ids:
        return set()
    return set(
        session.execute(
            select(Teacher.subject_id).where(
                Teacher.subject_id.in_(list(subject_ids)),
                scope_filter(principal, Teacher.country_code, Teacher.school_code),
            )
        ).scalars()
    )


def reconsent_marks(
    session: Session, principal: Principal, *, open_only: bool, due_before: date | None, limit: int
) -> list[tuple[ReconsentMark, str]]:
    """Re-consent marks in the principal's scope with the student's subject id, soonest due first."""
    query = (
        select(ReconsentMark, Student.subject_id)
        .join(Student, Student.id == ReconsentMark.student_id)
        .where(scope_filter(principal, Student.country_code, Student.school_code))
        .order_by(ReconsentMark.due_on, ReconsentMark.id)
        .limit(limit)
    )
    if open_only:
        query = query.where(ReconsentMark.resolved_at.is_(None))
    if due_before is not None:
        query = query.where(ReconsentMark.due_on < due_before)
    return [(mark, subject) for mark, subject in session.execute(query)]


def rule_impacts(session: Session, rule_id: int) -> list[tuple[RuleImpact, str]]:
    """The students a rule version affects, with their subject ids."""
    query = (
        select(RuleImpact, Student.subject_id)
        .join(Student, Student.id == RuleImpact.student_id)
        .where(RuleImpact.rule_id == rule_id)
        .order_by(RuleImpact.id)
    )
    return [(impact, subject) for impact, subject in session.execute(query)]


def withdrawals(session: Session, *, limit: int) -> list[Withdrawal]:
    """Withdrawal events, newest first."""
    return list(session.execute(select(Withdrawal).order_by(Withdrawal.id.desc()).limit(limit)).scalars())
