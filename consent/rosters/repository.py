"""Queries on the rosters. Every query a staff member can trigger narrows through ``consent.scope``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from access.principal import Principal
from consent.rosters.models import Guardian, Guardianship, Student, Teacher
from consent.scope import scope_filter

_CHUNK = 10_000
"""Values per IN list: well under PostgreSQL's 65,535 bind parameters."""


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = list(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _student_scope(principal: Principal) -> ColumnElement[bool]:
    return scope_filter(principal, Student.country_code, Student.school_code)


def students_by_ref_index(
    session: Session, principal: Principal, indexes: Iterable[str]
) -> dict[str, Student]:
    """Students in scope with these reference indexes, by index (one query per 10,000)."""
    found: dict[str, Student] = {}
    for chunk in _chunks(indexes):
        query = select(Student).where(Student.ref_index.in_(chunk), _student_scope(principal))
        found.update({student.ref_index: student for student in session.scalars(query)})
    return found


def student(session: Session, principal: Principal, subject_id: str) -> Student | None:
    """One student in scope (erased students included: their row remains)."""
    return session.scalars(
        select(Student).where(Student.subject_id == subject_id, _student_scope(principal))
    ).first()


def students(
    session: Session, principal: Principal, *, school: str | None, limit: int, offset: int
) -> tuple[Sequence[Student], int]:
    """A page of the students in scope, by school, class and id, and the total."""
    where = [_student_scope(principal)]
    if school is not None:
        where.append(Student.school_code == school)
    total = session.scalar(select(func.count()).select_from(Student).where(*where)) or 0
    page = session.scalars(
        select(Student)
        .where(*where)
        .order_by(Student.school_code, Student.class_name, Student.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return page, total


def guardians_of(session: Session, student_ids: Iterable[int]) -> list[tuple[Guardianship, Guardian]]:
    """The guardianships (with their guardians) of these students, by student then guardian id."""
    ids = list(set(student_ids))
    if not ids:
        return []
    rows = session.execute(
        select(Guardianship, Guardian)
        .join(Guardian, Guardian.id == Guardianship.guardian_id)
        .where(Guardianship.student_id.in_(ids))
        .order_by(Guardianship.student_id, Guardian.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def guardians_by_email_index(session: Session, country: str, indexes: Iterable[str]) -> dict[str, Guardian]:
    """Guardians of a country with these email indexes (the oldest when several share one)."""
    found: dict[str, Guardian] = {}
    for chunk in _chunks(indexes):
        query = (
            select(Guardian)
            .where(
                Guardian.email_index.in_(chunk),
                Guardian.country_code == country,
                Guardian.erased_at.is_(None),
            )
            .order_by(Guardian.id.desc())
        )
        found.update({g.email_index: g for g in session.scalars(query) if g.email_index is not None})
    return found


def guardian(session: Session, principal: Principal, guardian_id: str) -> Guardian | None:
    """A guardian visible to the principal: of their country, linked to a student of their schools."""
    query = select(Guardian).where(
        Guardian.guardian_id == guardian_id, scope_filter(principal, Guardian.country_code)
    )
    found = session.scalars(query).first()
    if found is None or not principal.schools or principal.country is None:
        return found
    linked = session.scalar(
        select(func.count())
        .select_from(Guardianship)
        .join(Student, Student.id == Guardianship.student_id)
        .where(Guardianship.guardian_id == found.id, _student_scope(principal))
    )
    return found if linked else None


def guardian_by_email_index(session: Session, index: str) -> Guardian | None:
    """The oldest guardian (not erased) with this email index, in any country."""
    return session.scalars(
        select(Guardian)
        .where(Guardian.email_index == index, Guardian.erased_at.is_(None))
        .order_by(Guardian.id)
    ).first()


def teachers_by_email_index(session: Session, indexes: Iterable[str]) -> dict[str, Teacher]:
    """Teachers with these email indexes in any country (the index is unique across the project)."""
    found: dict[str, Teacher] = {}
    for chunk in _chunks(indexes):
        found.update(
            {t.email_index: t for t in session.scalars(select(Teacher).where(Teacher.email_index.in_(chunk)))}
        )
    return found


def teacher(session: Session, principal: Principal, subject_id: str) -> Teacher | None:
    """One teacher in scope."""
    return session.scalars(
        select(Teacher).where(
            Teacher.subject_id == subject_id,
            scope_filter(principal, Teacher.country_code, Teacher.school_code),
        )
    ).first()


def teachers(
    session: Session, principal: Principal, *, school: str | None, limit: int, offset: int
) -> tuple[Sequence[Teacher], int]:
    """A page of the teachers in scope, by school and id, and the total."""
    where = [scope_filter(principal, Teacher.country_code, Teacher.school_code)]
    if school is not None:
        where.append(Teacher.school_code == school)
    total = session.scalar(select(func.count()).select_from(Teacher).where(*where)) or 0
    page = session.scalars(
        select(Teacher).where(*where).order_by(Teacher.school_code, Teacher.id).limit(limit).offset(offset)
    ).all()
    return page, total


def student_for_system(session: Session, subject_id: str) -> Student | None:
    """A student by subject id, unscoped: for the enclave's own jobs (erasure), never for staff."""
    return session.scalars(select(Student).where(Student.subject_id == subject_id)).first()


def guardian_for_system(session: Session, guardian_id: str) -> Guardian | None:
    """A guardian by guardian id, unscoped: for the enclave's own jobs, never for staff."""
    return session.scalars(select(Guardian).where(Guardian.guardian_id == guardian_id)).first()


def teacher_for_system(session: Session, subject_id: str) -> Teacher | None:
    """A teacher by subject id, unscoped: for the enclave's own jobs, never for staff."""
    return session.scalars(select(Teacher).where(Teacher.subject_id == subject_id)).first()
