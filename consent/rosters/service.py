"""Reading, rectifying and erasing roster entries.

Imports live in ``consent.rosters.importing``. Reads of decrypted identities (a pupil reference, a
guardian's or teacher's name and email) are audited as ``consent.identity_viewed``; corrections as
``consent.roster_rectified`` with the names of the changed fields, never their values. Entries
outside a steward's scope are answered as not found, so their existence is not revealed.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from access.audit.actions import Details, Identifier, register_action
from access.audit.service import record
from access.principal import Principal
from consent.codes import LANGUAGE_CODES
from consent.identity import IdentityField, IdentityProtector, normalise_email
from consent.rosters import repository
from consent.rosters.csv_format import EMAIL, FORMULA_STARTS, SCHOOL_CODE, birth_problem
from consent.rosters.exceptions import IdentityTaken, InvalidRectification, RosterEntryNotFound
from consent.rosters.importing import pin_identity_keys, student_ref_index, utc_today
from consent.rosters.models import Delivery, Guardian, Student, Teacher
from consent.rosters.schemas import GuardianRectify, StudentRectify, TeacherRectify
from consent.scope import in_scope
from infra.logging import get_logger

log = get_logger(__name__)


class RosterSubject(StrEnum):
    """Which roster an entry is on."""

    student = "student"
    guardian = "guardian"
    teacher = "teacher"


class RosterRectifiedDetails(Details):
    """Ledger details of a correction: which entry, and the names of the fields changed."""

    subject_type: RosterSubject
    fields: list[Identifier]


class IdentityViewedDetails(Details):
    """Ledger details of a read of decrypted identities: whose, how many, which fields."""

    subject_type: RosterSubject
    count: int
    fields: list[Identifier]


ROSTER_RECTIFIED = register_action("consent.roster_rectified", RosterRectifiedDetails)
IDENTITY_VIEWED = register_action("consent.identity_viewed", IdentityViewedDetails)


def _now() -> datetime:
    return datetime.now(UTC)


def _viewed(
    session: Session,
    principal: Principal,
    subject: RosterSubject,
    *,
    target_id: str | None,
    count: int,
    fields: list[str],
) -> None:
    record(
        session,
        principal.actor,
        IDENTITY_VIEWED,
        target_type=subject.value,
        target_id=target_id,
        details=IdentityViewedDetails(subject_type=subject, count=count, fields=fields),
    )


# -- students ---------------------------------------------------------------------------------


def get_student(session: Session, principal: Principal, subject_id: str) -> Student:
    """A student in the principal's scope; not found otherwise (existence is not revealed)."""
    student = repository.student(session, principal, subject_id)
    if student is None:
        raise RosterEntryNotFound("student", subject_id)
    return student


def list_students(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    *,
    school: str | None = None,
    limit: int = 100,
    offset: int = 0,
    reveal: bool = False,
) -> tuple[Sequence[Student], int, dict[int, str]]:
    """A page of students in scope, the total, and (with ``reveal``, audited) their pupil references."""
    page, total = repository.students(session, principal, school=school, limit=limit, offset=offset)
    refs: dict[int, str] = {}
    if reveal and page:
        pin_identity_keys(session, protector)
        refs = {s.id: protector.decrypt(session, IdentityField.student_ref, s.ref_ciphertext) for s in page}
        _viewed(
            session, principal, RosterSubject.student, target_id=None, count=len(page), fields=["student_ref"]
        )
    return page, total, refs


def guardians_of(session: Session, student_id: int) -> list[Guardian]:
    """The guardians linked to a student (by the student's row id), oldest first."""
    return [guardian for _, guardian in repository.guardians_of(session, [student_id])]


def decrypt_guardian(session: Session, protector: IdentityProtector, guardian: Guardian) -> dict[str, Any]:
    """A guardian's identity in clear: guardian_id, name, email (or None), delivery, language."""
    email = guardian.email_ciphertext
    return {
        "guardian_id": guardian.guardian_id,
        "name": protector.decrypt(session, IdentityField.guardian_name, guardian.name_ciphertext),
        "email": protector.decrypt(session, IdentityField.guardian_email, email) if email else None,
        "delivery": guardian.delivery,
        "language": guardian.language,
    }


def student_with_guardians(
    session: Session, principal: Principal, protector: IdentityProtector, subject_id: str
) -> tuple[Student, list[dict[str, Any]]]:
    """A student in scope and their guardians decrypted (with relation); the read is audited."""
    student = get_student(session, principal, subject_id)
    guardians = []
    for link, guardian in repository.guardians_of(session, [student.id]):
        guardians.append({**decrypt_guardian(session, protector, guardian), "relation": link.relation})
    _viewed(
        session,
        principal,
        RosterSubject.student,
        target_id=subject_id,
        count=len(guardians),
        fields=["guardian_name", "guardian_email"],
    )
    return student, guardians


def find_guardian_by_email(session: Session, protector: IdentityProtector, email: str) -> Guardian | None:
    """The guardian (not erased) with this email address, found by its blind index; None if none."""
    index = protector.blind_index(session, IdentityField.guardian_email, normalise_email(email))
    return repository.guardian_by_email_index(session, index)


def _text(field: str, value: str) -> str:
    value = value.strip()
    if not value or value.startswith(FORMULA_STARTS) or any(ord(ch) < 32 for ch in value):
        raise InvalidRectification(
            field, "is empty, has a control character or looks like a spreadsheet formula", code="bad_text"
        )
    return value


def _language(value: str) -> str:
    if value.lower() not in LANGUAGE_CODES:
        raise InvalidRectification("language", "is not an ISO 639-1 language code", code="unknown_language")
    return value.lower()


def _email(field: str, value: str) -> str:
    value = _text(field, value)
    if not EMAIL.match(value):
        raise InvalidRectification(field, "is not a valid email address", code="bad_email")
    return value


def _rectified(
    session: Session, principal: Principal, subject: RosterSubject, target_id: str, fields: list[str]
) -> list[str]:
    if fields:
        record(
            session,
            principal.actor,
            ROSTER_RECTIFIED,
            target_type=subject.value,
            target_id=target_id,
            details=RosterRectifiedDetails(subject_type=subject, fields=sorted(fields)),
        )
        log.info("consent.roster_rectified", subject_type=subject.value, target_id=target_id)
    return sorted(fields)


def rectify_student(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    subject_id: str,
    changes: StudentRectify,
    *,
    today: date | None = None,
) -> tuple[Student, list[str]]:
    """Correct a student's reference, stage, class, language or birth month; returns the changed
    field names. A new reference is re-encrypted and re-indexed (409 if the school already has it)."""
    student = get_student(session, principal, subject_id)
    given = changes.model_dump(exclude_unset=True, exclude_none=True)
    if "class_name" in given:
        given["class_name"] = _text("class_name", given["class_name"])
    if "language" in given:
        given["language"] = _language(given["language"])
    year, month = given.get("birth_year", student.birth_year), given.get("birth_month", student.birth_month)
    problem = birth_problem(year, month, today or utc_today())
    if ("birth_year" in given or "birth_month" in given) and problem is not None:
        raise InvalidRectification("birth_month", problem[0], code=problem[1])
    changed = [
        name for name, value in given.items() if name != "student_ref" and getattr(student, name) != value
    ]
    for name in changed:
        setattr(student, name, given[name])
    if "student_ref" in given:
        ref = _text("student_ref", given["student_ref"])
        index = student_ref_index(session, protector, student.country_code, student.school_code, ref)
        if index != student.ref_index:
            if repository.students_by_ref_index(session, principal, [index]):
                raise IdentityTaken("student_ref")
            student.ref_index = index
            student.ref_ciphertext = protector.encrypt(session, IdentityField.student_ref, ref)
            changed.append("student_ref")
    if changed:
        student.updated_at = _now()
        session.flush()
    return student, _rectified(session, principal, RosterSubject.student, subject_id, changed)


# -- guardians --------------------------------------------------------------------------------


def get_guardian(session: Session, principal: Principal, guardian_id: str) -> Guardian:
    """A guardian in the principal's scope; not found otherwise."""
    guardian = repository.guardian(session, principal, guardian_id)
    if guardian is None:
        raise RosterEntryNotFound("guardian", guardian_id)
    return guardian


def rectify_guardian(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    guardian_id: str,
    changes: GuardianRectify,
) -> tuple[Guardian, list[str]]:
    """Correct a guardian's name, email, delivery or language; a new email is re-encrypted and
    re-indexed, so look-ups find the guardian by the new address only. Returns the changed fields."""
    guardian = get_guardian(session, principal, guardian_id)
    given = changes.model_dump(exclude_unset=True)
    changed: list[str] = []
    if given.get("name") is not None:
        name = _text("name", given["name"])
        if name != protector.decrypt(session, IdentityField.guardian_name, guardian.name_ciphertext):
            guardian.name_ciphertext = protector.encrypt(session, IdentityField.guardian_name, name)
            changed.append("name")
    if "email" in given:
        changed += _rectify_guardian_email(session, protector, guardian, given["email"])
    if given.get("language") is not None and _language(given["language"]) != guardian.language:
        guardian.language = _language(given["language"])
        changed.append("language")
    if given.get("delivery") is not None and given["delivery"] != guardian.delivery:
        guardian.delivery = Delivery(given["delivery"]).value
        changed.append("delivery")
    if guardian.delivery == Delivery.email and guardian.email_ciphertext is None:
        raise InvalidRectification("email", "is needed when delivery is email", code="email_required")
    if changed:
        guardian.updated_at = _now()
        session.flush()
    return guardian, _rectified(session, principal, RosterSubject.guardian, guardian_id, changed)


def _rectify_guardian_email(
    session: Session, protector: IdentityProtector, guardian: Guardian, value: str | None
) -> list[str]:
    if value is None or not value.strip():
        if guardian.email_ciphertext is None:
            return []
        guardian.email_ciphertext, guardian.email_index = None, None
        return ["email"]
    email = _email("email", value)
    index = protector.blind_index(session, IdentityField.guardian_email, normalise_email(email))
    current = guardian.email_ciphertext
    same_index = index == guardian.email_index and current is not None
    if same_index and current and protector.decrypt(session, IdentityField.guardian_email, current) == email:
        return []
    guardian.email_ciphertext = protector.encrypt(session, IdentityField.guardian_email, email)
    guardian.email_index = index
    return ["email"]


# -- teachers ---------------------------------------------------------------------------------


def get_teacher(session: Session, principal: Principal, subject_id: str) -> Teacher:
    """A teacher in the principal's scope; not found otherwise."""
    teacher = repository.teacher(session, principal, subject_id)
    if teacher is None:
        raise RosterEntryNotFound("teacher", subject_id)
    return teacher


def list_teachers(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    *,
    school: str | None = None,
    limit: int = 100,
    offset: int = 0,
    reveal: bool = False,
) -> tuple[Sequence[Teacher], int, dict[int, tuple[str, str]]]:
    """A page of teachers in scope, the total, and (with ``reveal``, audited) names and emails."""
    page, total = repository.teachers(session, principal, school=school, limit=limit, offset=offset)
    identities: dict[int, tuple[str, str]] = {}
    if reveal and page:
        pin_identity_keys(session, protector)
        identities = {
            t.id: (
                protector.decrypt(session, IdentityField.teacher_name, t.name_ciphertext),
                protector.decrypt(session, IdentityField.teacher_email, t.email_ciphertext),
            )
            for t in page
        }
        _viewed(
            session,
            principal,
            RosterSubject.teacher,
            target_id=None,
            count=len(page),
            fields=["teacher_name", "teacher_email"],
        )
    return page, total, identities


def rectify_teacher(
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    subject_id: str,
    changes: TeacherRectify,
) -> tuple[Teacher, list[str]]:
    """Correct a teacher's name, email, school (within the caller's scope) or language; returns
    the changed fields. A new email is re-indexed (409 if another teacher has it)."""
    teacher = get_teacher(session, principal, subject_id)
    given = changes.model_dump(exclude_unset=True, exclude_none=True)
    changed: list[str] = []
    if "name" in given:
        name = _text("name", given["name"])
        if name != protector.decrypt(session, IdentityField.teacher_name, teacher.name_ciphertext):
            teacher.name_ciphertext = protector.encrypt(session, IdentityField.teacher_name, name)
            changed.append("name")
    if "email" in given:
        email = _email("email", given["email"])
        index = protector.blind_index(session, IdentityField.teacher_email, normalise_email(email))
        if email != protector.decrypt(session, IdentityField.teacher_email, teacher.email_ciphertext):
            other = repository.teachers_by_email_index(session, [index]).get(index)
            if other is not None and other.id != teacher.id:
                raise IdentityTaken("email")
            teacher.email_ciphertext = protector.encrypt(session, IdentityField.teacher_email, email)
            teacher.email_index = index
            changed.append("email")
    if "school_code" in given:
        school = given["school_code"].strip().upper()
        if not SCHOOL_CODE.match(school) or not in_scope(principal, teacher.country_code, school):
            raise InvalidRectification(
                "school_code", "is not a school code within your scope", code="bad_school"
            )
        if school != teacher.school_code:
            teacher.school_code = school
            changed.append("school_code")
    if "language" in given and _language(given["language"]) != teacher.language:
        teacher.language = _language(given["language"])
        changed.append("language")
    if changed:
        teacher.updated_at = _now()
        session.flush()
    return teacher, _rectified(session, principal, RosterSubject.teacher, subject_id, changed)


# -- erasure ----------------------------------------------------------------------------------


def erase_identity(
    session: Session, protector: IdentityProtector, kind: RosterSubject | str, identifier: str
) -> Student | Guardian | Teacher:
    """Erase an identity (Art. 17): ciphertexts emptied, blind indexes replaced by random values so
    the entry can never be found by reference or email again, ``erased_at`` set. ``identifier`` is the
    subject_id (students, teachers) or guardian_id. The caller records the request in the ledger.

    ``protector`` is part of the signature so a later key-aware erasure needs no caller change.
    """
    del protector
    kind = RosterSubject(kind)
    now = _now()
    erased: Student | Guardian | Teacher | None
    if kind is RosterSubject.student:
        erased = repository.student_for_system(session, identifier)
        if erased is not None:
            erased.ref_ciphertext, erased.ref_index = b"", "erased:" + secrets.token_hex(28)
    elif kind is RosterSubject.guardian:
        erased = repository.guardian_for_system(session, identifier)
        if erased is not None:
            erased.name_ciphertext, erased.email_ciphertext, erased.email_index = b"", None, None
    else:
        erased = repository.teacher_for_system(session, identifier)
        if erased is not None:
            erased.name_ciphertext, erased.email_ciphertext = b"", b""
            erased.email_index = "erased:" + secrets.token_hex(28)
    if erased is None:
        raise RosterEntryNotFound(kind.value, identifier)
    erased.erased_at = erased.erased_at or now
    erased.updated_at = now
    session.flush()
    log.info("consent.identity_erased", subject_type=kind.value)
    return erased
