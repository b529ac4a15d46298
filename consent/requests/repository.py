"""Queries of data-subject requests; everything a steward can trigger narrows through ``consent.scope``.

A request has no country of its own: it is visible when its subject is. A student or teacher is in
scope by their country and school; a guardian by the students they are linked to (or, for a country
coordinator, by the guardian's country).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import ColumnElement, Select, and_, case, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from access.audit.models import AuditEntry
from access.principal import Principal
from consent.decisions.models import Decision, ReconsentMark, Withdrawal
from consent.forms.models import ConsentForm, Purpose
from consent.requests.models import DataSubjectRequest, RequestKind, RequestState, SubjectKind
from consent.rosters.models import Guardian, Guardianship, Student, Teacher
from consent.scope import scope_filter, sees_everything

CLOSED = (RequestState.completed.value, RequestState.refused.value)
DSR = DataSubjectRequest


def guardian_scope(principal: Principal) -> ColumnElement[bool]:
    """Guardians the principal may see: linked to a student in scope, or of a coordinator's country."""
    if sees_everything(principal):
        return true()
    linked = exists().where(
        Guardianship.guardian_id == Guardian.id,
        Guardianship.student_id == Student.id,
        scope_filter(principal, Student.country_code, Student.school_code),
    )
    if principal.schools:
        return linked
    return or_(linked, scope_filter(principal, Guardian.country_code))


def find_student(session: Session, principal: Principal, subject_id: str) -> Student | None:
    """The student with this subject id, if the principal may see them."""
    return session.execute(
        select(Student).where(
            Student.subject_id == subject_id,
            scope_filter(principal, Student.country_code, Student.school_code),
        )
    ).scalar_one_or_none()


def find_teacher(session: Session, principal: Principal, subject_id: str) -> Teacher | None:
    """The teacher with this subject id, if the principal may see them."""
    return session.execute(
        select(Teacher).where(
            Teacher.subject_id == subject_id,
            scope_filter(principal, Teacher.country_code, Teacher.school_code),
        )
    ).scalar_one_or_none()


def find_guardian(session: Session, principal: Principal, guardian_id: str) -> Guardian | None:
    """The guardian with this guardian id, if the principal may see them."""
    return session.execute(
        select(Guardian).where(Guardian.guardian_id == guardian_id, guardian_scope(principal))
    ).scalar_one_or_none()


def _visible(principal: Principal) -> ColumnElement[bool]:
    if sees_everything(principal):
        return true()
    if principal.country is None:
        return false()
    students = select(Student.subject_id).where(
        scope_filter(principal, Student.country_code, Student.school_code)
    )
    teachers = select(Teacher.subject_id).where(
        scope_filter(principal, Teacher.country_code, Teacher.school_code)
    )
    guardians = select(Guardian.guardian_id).where(guardian_scope(principal))
    return or_(
        and_(DSR.subject_kind == SubjectKind.student.value, DSR.subject_id.in_(students)),
        and_(DSR.subject_kind == SubjectKind.teacher.value, DSR.subject_id.in_(teachers)),
        and_(DSR.subject_kind == SubjectKind.guardian.value, DSR.subject_id.in_(guardians)),
    )


def get_request(
    session: Session, principal: Principal, request_id: str, *, for_update: bool = False
) -> DataSubjectRequest | None:
    """One request, if its subject is visible to the principal; locked for a state change."""
    query = select(DSR).where(DSR.id == request_id, _visible(principal))
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def effective_due() -> ColumnElement[date]:
    """The due date that counts, as SQL."""
    return func.coalesce(DSR.extended_due_on, DSR.due_on)


def overdue_clause(today: date) -> ColumnElement[bool]:
    """Requests not closed whose effective due date is before ``today``."""
    return and_(DSR.state.not_in(CLOSED), effective_due() < today)


def queue(
    session: Session,
    principal: Principal,
    *,
    today: date,
    state: RequestState | None = None,
    kind: RequestKind | None = None,
    overdue: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[DataSubjectRequest]:
    """Requests in the principal's scope: overdue first (oldest due first), then by due date."""
    query: Select[DataSubjectRequest] = select(DSR).where(_visible(principal))
    if state is not None:
        query = query.where(DSR.state == state.value)
    if kind is not None:
        query = query.where(DSR.kind == kind.value)
    if overdue is not None:
        late = overdue_clause(today)
        query = query.where(late if overdue else ~late)
    is_late = case((overdue_clause(today), 0), else_=1)
    query = query.order_by(is_late, effective_due(), DSR.received_on, DSR.created_at, DSR.id)
    return session.execute(query.limit(limit).offset(offset)).scalars().all()


def requests_about(session: Session, subject_id: str) -> Sequence[DataSubjectRequest]:
    """Every request about one subject, oldest first."""
    return (
        session.execute(
            select(DSR).where(DSR.subject_id == subject_id).order_by(DSR.received_on, DSR.created_at)
        )
        .scalars()
        .all()
    )


def guardians_of(session: Session, student: Student) -> Sequence[tuple[Guardian, str]]:
    """A student's guardians with their relation."""
    return session.execute(
        select(Guardian, Guardianship.relation)
        .join(Guardianship, Guardianship.guardian_id == Guardian.id)
        .where(Guardianship.student_id == student.id)
        .order_by(Guardian.id)
    ).all()


def students_of(session: Session, guardian: Guardian) -> Sequence[tuple[Student, str]]:
    """The students a guardian is linked to, with the relation."""
    return session.execute(
        select(Student, Guardianship.relation)
        .join(Guardianship, Guardianship.student_id == Student.id)
        .where(Guardianship.guardian_id == guardian.id)
        .order_by(Student.id)
    ).all()


def unlink_guardian(session: Session, guardian: Guardian) -> int:
    """Remove a guardian's links to students; returns how many there were."""
    links = (
        session.execute(select(Guardianship).where(Guardianship.guardian_id == guardian.id)).scalars().all()
    )
    for link in links:
        session.delete(link)
    session.flush()
    return len(links)


def decisions(
    session: Session,
    *,
    student: Student | None = None,
    teacher: Teacher | None = None,
    guardian: Guardian | None = None,
) -> Sequence[tuple[Decision, int, str | None, str | None]]:
    """Decisions about a student or teacher, or made by a guardian, oldest first, with form version,
    the deciding guardian's id and the subject id of the student or teacher decided for."""
    query = (
        select(
            Decision,
            ConsentForm.version,
            Guardian.guardian_id,
            func.coalesce(Student.subject_id, Teacher.subject_id),
        )
        .join(ConsentForm, ConsentForm.id == Decision.form_id)
        .outerjoin(Guardian, Guardian.id == Decision.guardian_id)
        .outerjoin(Student, Student.id == Decision.student_id)
        .outerjoin(Teacher, Teacher.id == Decision.teacher_id)
    )
    if student is not None:
        query = query.where(Decision.student_id == student.id)
    elif teacher is not None:
        query = query.where(Decision.teacher_id == teacher.id)
    elif guardian is not None:
        query = query.where(Decision.guardian_id == guardian.id)
    else:
        return []
    return session.execute(query.order_by(Decision.recorded_at, Decision.id)).all()


def withdrawals(session: Session, subject_id: str) -> Sequence[Withdrawal]:
    """Withdrawal events about one subject, oldest first."""
    return (
        session.execute(
            select(Withdrawal)
            .where(Withdrawal.subject_id == subject_id)
            .order_by(Withdrawal.effective_at, Withdrawal.id)
        )
        .scalars()
        .all()
    )


def open_reconsent_marks(session: Session, student: Student) -> Sequence[ReconsentMark]:
    """A student's re-consent marks not yet resolved."""
    return (
        session.execute(
            select(ReconsentMark)
            .where(ReconsentMark.student_id == student.id, ReconsentMark.resolved_at.is_(None))
            .order_by(ReconsentMark.due_on, ReconsentMark.id)
        )
        .scalars()
        .all()
    )


def ledger_entries(session: Session, target_id: str) -> Sequence[AuditEntry]:
    """Sealed ledger entries whose target is this id, in chain order."""
    return (
        session.execute(select(AuditEntry).where(AuditEntry.target_id == target_id).order_by(AuditEntry.seq))
        .scalars()
        .all()
    )


def purpose_codes(session: Session) -> list[str]:
    """Every purpose the project asks consent for."""
    return list(session.execute(select(Purpose.code).order_by(Purpose.position, Purpose.code)).scalars())
