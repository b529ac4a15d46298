"""Carrying out rectification, erasure, restriction and objection on the rosters.

Every change that can alter a student's consent status (restriction, erasure, a guardian unlinked,
a corrected birth date) refreshes the students' rows of the status cache in the same transaction
(``consent.decisions.status_cache``), so batch status calls see it at once.

What each right does here (the request service calls these when the DPO completes a request):

* **Rectification (Art. 16).** The corrected values given with the request are applied through
  ``consent.rosters.service`` (``rectify_student``/``rectify_guardian``/``rectify_teacher``), which
  validates them, re-encrypts and re-indexes identities and records ``consent.roster_rectified``
  with the changed field names: a student's pupil reference (``student_ref``), class, stage,
  language and birth year/month; a guardian's or teacher's name, email and language. A value the
  rosters refuse (e.g. text that looks like a spreadsheet formula: 422) or that belongs to another
  entry (409) changes nothing and leaves the request open; the DPO then refuses it or records a
  corrected request.
* **Erasure (Art. 17).** ``consent.rosters.service.erase_identity`` empties the identity
  ciphertexts, replaces unique blind indexes by random values and sets ``erased_at``, so nothing
  decryptable remains. Decisions stay: they are the proof that processing had a lawful basis
  (Art. 17(3)(b) and (e)) and point to a subject id that no longer resolves to a person. A student
  or teacher's erasure emits a withdrawal for every purpose with reason ``erasure``, which makes the
  enclave remove their rows. An erased guardian is also unlinked from their students: the link
  itself says who the guardian of a child is, and an erased guardian can no longer be reached. The
  children's consent given earlier is not withdrawn by this (a guardian who wants that withdraws
  first); the students' status then depends on the remaining guardians. Guardians have no research
  rows, so no withdrawal is emitted for them. The subject's data-subject requests are kept (they
  prove how the rights were handled: kinds, dates, reasons told to the subject) but their staff
  notes and any pending corrected values are removed.
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

from sqlalchemy.orm import Session

from access.principal import Principal
from consent.decisions import status_cache
from consent.decisions.models import Withdrawal
from consent.decisions.withdrawals import WithdrawalReason, emit_withdrawal
from consent.identity import IdentityField, IdentityProtector
from consent.requests import repository
from consent.requests.exceptions import RequestConflict
from consent.requests.models import SubjectKind
from consent.rosters import service as rosters
from consent.rosters.models import Guardian, Student, Teacher
from consent.rosters.schemas import GuardianRectify, StudentRectify, TeacherRectify

Subject = Student | Teacher | Guardian

RECTIFIABLE: dict[SubjectKind, frozenset[str]] = {
    SubjectKind.student: frozenset(
        {"student_ref", "class_name", "stage", "language", "birth_year", "birth_month"}
    ),
    SubjectKind.guardian: frozenset({"name", "email", "language"}),
    SubjectKind.teacher: frozenset({"name", "email", "language"}),
}
"""The fields a rectification may correct, by subject kind."""

ENCRYPTED: dict[tuple[SubjectKind, str], IdentityField] = {
    (SubjectKind.student, "student_ref"): IdentityField.student_ref,
    (SubjectKind.guardian, "name"): IdentityField.guardian_name,
    (SubjectKind.guardian, "email"): IdentityField.guardian_email,
    (SubjectKind.teacher, "name"): IdentityField.teacher_name,
    (SubjectKind.teacher, "email"): IdentityField.teacher_email,
}
"""Rectified values that are identity: held encrypted in the request until applied."""


ERASED_DETAILS = frozenset({"note", "changes"})
"""What an erasure removes from the subject's requests: free-text notes and pending corrected values."""


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
    session: Session,
    principal: Principal,
    protector: IdentityProtector,
    subject: Subject,
    changes: dict[str, Any],
) -> Effect:
    """Apply corrected values (plaintext) through the rosters service, which validates and audits them."""
    if subject.erased_at is not None:
        raise RequestConflict(
            "the subject's identity was erased: there is nothing to rectify", code="subject_erased"
        )
    if isinstance(subject, Student):
        _, changed = rosters.rectify_student(
            session, principal, protector, subject.subject_id, StudentRectify.model_validate(changes)
        )
        status_cache.refresh(session, [subject.id])
    elif isinstance(subject, Teacher):
        _, changed = rosters.rectify_teacher(
            session, principal, protector, subject.subject_id, TeacherRectify.model_validate(changes)
        )
    else:
        _, changed = rosters.rectify_guardian(
            session, principal, protector, subject.guardian_id, GuardianRectify.model_validate(changes)
        )
    return Effect(fields=tuple(sorted(changed)))


def erase(session: Session, protector: IdentityProtector, subject: Subject, kind: SubjectKind) -> Effect:
    """Empty the subject's identity, keep their decisions, and have the enclave remove their rows."""
    rosters.erase_identity(session, protector, kind.value, subject_id_of(subject))
    for request in repository.requests_about(session, subject_id_of(subject)):
        # Requests stay as proof of how the right was handled; staff notes about the person go.
        request.details = {key: value for key, value in request.details.items() if key not in ERASED_DETAILS}
    session.flush()
    if isinstance(subject, Guardian):
        children = [student.id for student, _ in repository.students_of(session, subject)]
        repository.unlink_guardian(session, subject)
        status_cache.refresh(session, children)
        return Effect()
    if isinstance(subject, Student):
        status_cache.refresh(session, [subject.id])
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
    if isinstance(subject, Student):
        status_cache.refresh(session, [subject.id])
    withdrawal = emit_withdrawal(
        session,
        subject_kind=kind.value,
        subject_id=subject.subject_id,
        purposes=repository.purpose_codes(session),
        reason=WithdrawalReason.restriction,
    )
    return Effect(withdrawal=withdrawal)
