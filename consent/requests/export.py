"""The access export (Art. 15): everything the consent store holds on one subject, as JSON or CSV.

Sections: ``identity`` (decrypted), ``decisions`` (about a student or teacher, or made by a
guardian), ``withdrawals``, ``reconsent_marks`` (open ones, students only), ``requests`` (every
data-subject request about the subject), ``ledger`` (sealed ledger entries whose target is the
subject: action, time, role of the actor and details — staff account ids are left out, they are not
the subject's data) and ``datasets`` (what the registered ``consent.requests.sources`` report; none
are registered yet, and the export says so in ``datasets_note``).

Field names are English; ``language`` states the requester's language, in which the covering letter
is written. The CSV is one "long" table, ``section, item, field, value``, one row per value (nested
values get dotted field names), every cell neutralised against spreadsheet formulas.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session

from access.audit.review_export import spreadsheet_safe
from access.audit.service import chain_queued
from consent.identity import IdentityField, IdentityProtector
from consent.requests import repository, sources
from consent.requests.fulfilment import Subject, subject_id_of
from consent.requests.models import DataSubjectRequest
from consent.rosters.models import Student, Teacher

NO_SOURCES_NOTE = (
    "No component holding research data has reported rows for this subject. Research data is held "
    "only under pseudonyms; when a dataset holds rows for this subject it is listed here with a count."
)
SOURCES_NOTE = (
    "Datasets holding rows under this subject's pseudonyms, as reported by the components holding them."
)


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _identity(session: Session, protector: IdentityProtector, subject: Subject) -> dict[str, Any]:
    erased = _iso(subject.erased_at)
    if isinstance(subject, Student):
        return {
            "country": subject.country_code,
            "school": subject.school_code,
            "stage": subject.stage,
            "class": subject.class_name,
            "language": subject.language,
            "birth_year": subject.birth_year,
            "birth_month": subject.birth_month,
            "pupil_reference": protector.decrypt(session, IdentityField.student_ref, subject.ref_ciphertext),
            "restricted_at": _iso(subject.restricted_at),
            "erased_at": erased,
            "guardians": [
                {
                    "guardian_id": guardian.guardian_id,
                    "relation": relation,
                    "name": protector.decrypt(session, IdentityField.guardian_name, guardian.name_ciphertext),
                    "email": protector.decrypt(
                        session, IdentityField.guardian_email, guardian.email_ciphertext or b""
                    ),
                    "language": guardian.language,
                }
                for guardian, relation in repository.guardians_of(session, subject)
            ],
        }
    if isinstance(subject, Teacher):
        return {
            "country": subject.country_code,
            "school": subject.school_code,
            "name": protector.decrypt(session, IdentityField.teacher_name, subject.name_ciphertext),
            "email": protector.decrypt(session, IdentityField.teacher_email, subject.email_ciphertext),
            "language": subject.language,
            "restricted_at": _iso(subject.restricted_at),
            "erased_at": erased,
        }
    return {
        "country": subject.country_code,
        "name": protector.decrypt(session, IdentityField.guardian_name, subject.name_ciphertext),
        "email": protector.decrypt(session, IdentityField.guardian_email, subject.email_ciphertext or b""),
        "delivery": subject.delivery,
        "language": subject.language,
        "erased_at": erased,
        "students": [
            {"subject_id": student.subject_id, "relation": relation}
            for student, relation in repository.students_of(session, subject)
        ],
    }


def _decisions(session: Session, subject: Subject) -> list[dict[str, Any]]:
    if isinstance(subject, Student):
        rows = repository.decisions(session, student=subject)
    elif isinstance(subject, Teacher):
        rows = repository.decisions(session, teacher=subject)
    else:
        rows = repository.decisions(session, guardian=subject)
    return [
        {
            "recorded_at": _iso(decision.recorded_at),
            "subject_id": decided_for,
            "decided_by": decision.decided_by,
            "guardian_id": guardian_id,
            "capacity": decision.capacity,
            "form_id": decision.form_id,
            "form_version": version,
            "text_sha256": decision.text_sha256,
            "purpose": decision.purpose,
            "choice": decision.choice,
            "channel": decision.channel,
            "expires_at": _iso(decision.expires_at),
        }
        for decision, version, guardian_id, decided_for in rows
    ]


def _request(request: DataSubjectRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "kind": request.kind,
        "state": request.state,
        "requested_by": request.requested_by,
        "received_on": _iso(request.received_on),
        "due_on": _iso(request.due_on),
        "extended_due_on": _iso(request.extended_due_on),
        "extension_reason": request.extension_reason,
        "closed_at": _iso(request.closed_at),
    }


def build_export(
    session: Session, protector: IdentityProtector, request: DataSubjectRequest, subject: Subject
) -> dict[str, Any]:
    """The export document for an access request about ``subject``."""
    subject_id = subject_id_of(subject)
    chain_queued(session)
    reported = sources.datasets_for(session, subject_id)
    document: dict[str, Any] = {
        "document": "access_export",
        "legal_basis": "GDPR Art. 15",
        "generated_at": datetime.now(UTC).isoformat(),
        "language": request.language,
        "field_names_language": "en",
        "request": {"id": request.id, "received_on": _iso(request.received_on)},
        "subject": {"kind": request.subject_kind, "id": subject_id},
        "identity": _identity(session, protector, subject),
        "decisions": _decisions(session, subject),
        "withdrawals": [
            {
                "event_id": row.event_id,
                "purposes": list(row.purposes),
                "reason": row.reason,
                "effective_at": _iso(row.effective_at),
            }
            for row in repository.withdrawals(session, subject_id)
        ],
        "reconsent_marks": [
            {"reason": mark.reason, "due_on": _iso(mark.due_on), "invited_at": _iso(mark.invited_at)}
            for mark in (
                repository.open_reconsent_marks(session, subject) if isinstance(subject, Student) else []
            )
        ],
        "requests": [_request(row) for row in repository.requests_about(session, subject_id)],
        "ledger": [
            {
                "seq": entry.seq,
                "occurred_at": _iso(entry.occurred_at),
                "action": entry.action,
                "actor_role": entry.actor_role,
                "outcome": entry.outcome,
                "details": entry.details,
            }
            for entry in repository.ledger_entries(session, subject_id)
            if entry.pruned_at is None
        ],
        "datasets": [
            {"source": name, "dataset": found.dataset, "rows": found.rows} for name, found in reported
        ],
        "datasets_note": SOURCES_NOTE if reported else NO_SOURCES_NOTE,
    }
    return document


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _flatten(f"{prefix}.{index}" if prefix else str(index), inner)
    else:
        yield prefix, value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return spreadsheet_safe(value)


def to_csv(document: dict[str, Any]) -> str:
    """The export as one long CSV: ``section, item, field, value``; formulas neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["section", "item", "field", "value"])
    for section, content in document.items():
        if isinstance(content, list):
            for index, item in enumerate(content):
                for field, value in _flatten("", item):
                    writer.writerow([section, index, _cell(field), _cell(value)])
        elif isinstance(content, dict):
            for field, value in _flatten("", content):
                writer.writerow([section, "", _cell(field), _cell(value)])
        else:
            writer.writerow([section, "", "", _cell(content)])
    return buffer.getvalue()
