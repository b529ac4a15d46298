"""Carrying out rectification, erasure, restriction and objection on the rosters.

What each right does here (the request service calls these when the DPO completes a request):

* **Rectification (Art. 16).** The corrected values given with the request are applied: a student's
  pupil reference (re-encrypted, blind index recomputed), class, stage, language and birth
  year/month; a guardian's or teacher's name and email (re-encrypted, email index recomputed) and
  language. A value that would collide with another person's pupil reference or teacher email is
  refused (409) and nothing is changed.
* **Erasure (Art. 17).** The identity ciphertexts are emptied (a blind index that must stay unique
  becomes ``erased:<subject id>``, which matches no real value) and ``erased_at`` is set, so nothing
  decryptable remains. Decisions stay: they are the proof that processing had a lawful basis
  (Art. 17(3)(b) and (e)) and point to a subject id that no longer resolves to a person. A student
  or teacher's erasure emits a withdrawal for every purpose with reason ``erasure``, which makes the
  enclave remove their rows. An erased guardian is also unlinked from their students: the link
  itself says who the guardian of a child is, and an erased guardian can no longer be reached. The
  children's consent given earlier is not withdrawn by this (a guardian who wants that withdraws
  first); the students' status then depends on the remaining guardians. Guardians have no research
  rows, so no withdrawal is emitted for them.
* **Restriction (Art. 18) and objection (Art. 21).** ``restricted_at`` is set on the student or
  teacher (the status rules treat them as not consenting while it is set) and a withdrawal for every
  purpose with reason ``restriction`` is emitted, so the enclave stops using their rows. In a project
  whose only lawful basis is consent, an objection ends processing just as a restriction does; an
  objection to some purposes only is a withdrawal of consent for them, recorded as a decision, not
  a request. Neither applies to a guardian, who holds no research data (refused when the request is
  made).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.decisions.models import Withdrawal
from consent.decisions.withdrawals import WithdrawalReason, emit_withdrawal
from consent.identity import IdentityField, IdentityProtector, normalise_email
from consent.requests import repository
from consent.requests.exceptions import RequestConflict
from consent.requests.models import SubjectKind
from consent.rosters.models import Guardian, Student, Teacher

Subject = Student | Teacher | Guardian

RECTIFIABLE: dict[SubjectKind, frozenset[str]] = {
    SubjectKind.student: frozenset(
        {"pupil_ref", "class_name", "stage", "language", "birth_year", "birth_month"}
    ),
    SubjectKind.guardian: frozenset({"name", "email", "language"}),
    SubjectKind.teacher: frozenset({"name", "email", "language"}),
}
"""The fields a rectification may correct, by subject kind."""

ENCRYPTED: dict[tuple[SubjectKind, str], IdentityField] = {
    (SubjectKind.student, "pupil_ref"): IdentityField.student_ref,
    (SubjectKind.guardian, "name"): IdentityField.guardian_name,
    (SubjectKind.guardian, "email"): IdentityField.guardian_email,
    (SubjectKind.teacher, "name"): IdentityField.teacher_name,
    (SubjectKind.teacher, "email"): IdentityField.teacher_email,
}
"""Rectified values that are identity: held encrypted in the request until applied."""


def erased_index(subject_id: str) -> str:
    """What a unique blind index becomes on erasure: unique, and never the hash of a real value."""
    return f"erased:{subject_id}"


def subject_id_of(subject: Subject) -> str:
    """The pseudonymous id a subject is known by outside the rosters."""
    return subject.guardian_id if isinstance(subject, Guardian) else subject.subject_id


@dataclass(frozen=True)
class Effect:
    """What carrying out a request did, for the ledger: the withdrawal emitted, if any."""

    withdrawal: Withdrawal | None = None
    fields: tuple[str, ...] = ()


def _now() -> datetime:
    return datetime.now(UTC)


def rectify(
    session: Session, protector: IdentityProtector, subject: Subject, changes: dict[str, Any]
) -> Effect:
    """Apply corrected values (plaintext, already validated for the subject's kind)."""
    if subject.erased_at is not None:
        raise RequestConflict(
            "the subject's identity was erased: there is nothing to rectify", code="subject_erased"
        )
    if isinstance(subject, Student):
        _rectify_student(session, protector, subject, changes)
    elif isinstance(subject, Teacher):
        _rectify_teacher(session, protector, subject, changes)
    else:
        _rectify_guardian(session, protector, subject, changes)
    subject.updated_at = _now()
    session.flush()
    return Effect(fields=tuple(sorted(changes)))


def _rectify_student(
    session: Session, protector: IdentityProtector, student: Student, changes: dict[str, Any]
) -> None:
    if "pupil_ref" in changes:
        ref = str(changes["pupil_ref"])
        index = protector.blind_index(
            session, IdentityField.student_ref, f"{student.country_code}/{student.school_code}/{ref}"
        )
        taken = session.execute(
            select(Student.id).where(Student.ref_index == index, Student.id != student.id)
        ).first()
        if taken is not None:
            raise RequestConflict(
                "another student of the school already has this pupil reference", code="pupil_ref_taken"
            )
        student.ref_index = index
        student.ref_ciphertext = protector.encrypt(session, IdentityField.student_ref, ref)
    for name in ("class_name", "stage", "language", "birth_year", "birth_month"):
        if name in changes:
            setattr(student, name, changes[name])


def _rectify_teacher(
    session: Session, protector: IdentityProtector, teacher: Teacher, changes: dict[str, Any]
) -> None:
    if "email" in changes:
        email = str(changes["email"])
        index = protector.blind_index(session, IdentityField.teacher_email, normalise_email(email))
        taken = session.execute(
            select(Teacher.id).where(Teacher.email_index == index, Teacher.id != teacher.id)
        ).first()
        if taken is not None:
            raise RequestConflict("another teacher already has this email address", code="email_taken")
        teacher.email_index = index
        teacher.email_ciphertext = protector.encrypt(session, IdentityField.teacher_email, email)
    if "name" in changes:
        teacher.name_ciphertext = protector.encrypt(session, IdentityField.teacher_name, str(changes["name"]))
    if "language" in changes:
        teacher.language = str(changes["language"])


def _rectify_guardian(
    session: Session, protector: IdentityProtector, guardian: Guardian, changes: dict[str, Any]
) -> None:
    if "email" in changes:
        email = str(changes["email"])
        guardian.email_index = protector.blind_index(
            session, IdentityField.guardian_email, normalise_email(email)
        )
        guardian.email_ciphertext = protector.encrypt(session, IdentityField.guardian_email, email)
    if "name" in changes:
        guardian.name_ciphertext = protector.encrypt(
            session, IdentityField.guardian_name, str(changes["name"])
        )
    if "language" in changes:
        guardian.language = str(changes["language"])


def _erase_identity(session: Session, subject: Subject) -> None:
    moment = _now()
    if isinstance(subject, Student):
        subject.ref_ciphertext = b""
        subject.ref_index = erased_index(subject.subject_id)
    elif isinstance(subject, Teacher):
        subject.name_ciphertext = b""
        subject.email_ciphertext = b""
        subject.email_index = erased_index(subject.subject_id)
    else:
        subject.name_ciphertext = b""
        subject.email_ciphertext = None
        subject.email_index = None
    subject.erased_at = subject.erased_at or moment
    subject.updated_at = moment
    session.flush()


def erase(session: Session, subject: Subject, kind: SubjectKind) -> Effect:
    """Empty the subject's identity, keep their decisions, and have the enclave remove their rows."""
    _erase_identity(session, subject)
    if isinstance(subject, Guardian):
        repository.unlink_guardian(session, subject)
        return Effect()
    withdrawal = emit_withdrawal(
        session,
        subject_kind=kind.value,
        subject_id=subject.subject_id,
        purposes=repository.purpose_codes(session),
        reason=WithdrawalReason.erasure,
    )
    return Effect(withdrawal=withdrawal)


def restrict(session: Session, subject: Student | Teacher, kind: SubjectKind) -> Effect:
    """Stop processing: mark the subject restricted and have the enclave stop using their rows."""
    moment = _now()
    subject.restricted_at = subject.restricted_at or moment
    subject.updated_at = moment
    session.flush()
    withdrawal = emit_withdrawal(
        session,
        subject_kind=kind.value,
        subject_id=subject.subject_id,
        purposes=repository.purpose_codes(session),
        reason=WithdrawalReason.restriction,
    )
    return Effect(withdrawal=withdrawal)
