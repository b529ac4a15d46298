"""The consent record a family downloads, in the structure of ISO/IEC TS 27560.

ISO/IEC TS 27560:2023 (privacy technologies: consent record information structure) describes what a
record of one consent act holds: the record and its schema version, timestamps, the data subject,
the controller, the processing purposes with their consent status, the notice the person was shown,
how consent was given, the jurisdiction, who gave it (and on what authority for a child) and the
record's event history. The keys below follow those information elements. The data subject is named
only by the pseudonymous subject id: the record holds no name, email or pupil reference.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consent.decisions.models import Decision
from consent.family.service import Event

SCHEMA = "ISO/IEC TS 27560:2023"
SCHEMA_VERSION = "letscare-consent-record/1.0"
CONTROLLER = {
    "name": "LET'S CARE project consortium",
    "role": "controller",
    "contact": "https://letscare-project.eu",
    "dpo_contact": "dpo@letscare-project.eu",
}
STATE = {"granted": "given", "declined": "refused", "withdrawn": "withdrawn"}
"""Our choices as the consent states of the record."""
LEGAL_BASIS = {
    "guardian": "Consent given by the holder of parental responsibility over the child (GDPR Art. 8(1))",
    "student": "The student's own decision under the national age rule",
    "teacher": "The data subject's own consent (GDPR Art. 6(1)(a))",
}
SPECIAL = "special_category"


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _history(rows: list[Decision]) -> list[dict[str, Any]]:
    events: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = events.setdefault(
            row.event_id,
            {
                "event_id": row.event_id,
                "timestamp": _iso(row.recorded_at),
                "form_id": row.form_id,
                "text_sha256": row.text_sha256,
                "channel": row.channel,
                "changes": {},
            },
        )
        entry["changes"][row.purpose] = STATE.get(row.choice, row.choice)
    return sorted(events.values(), key=lambda e: e["timestamp"])


def consent_record(event: Event, history: list[Decision]) -> dict[str, Any]:
    """The record of one submission and this person's history on the subject (newest decisions)."""
    first = event.rows[0]
    form = event.form
    view = event.view
    decided_by = first.decided_by
    giver: dict[str, Any] = {"role": decided_by, "capacity": first.capacity}
    if decided_by == "guardian":
        giver["legal_basis"] = LEGAL_BASIS["guardian"]
        giver["on_behalf_of"] = "child"
    else:
        giver["legal_basis"] = LEGAL_BASIS[decided_by]
        if first.capacity == "assent":
            giver["note"] = "A child's assent, given in addition to the guardians' consent"
    language = form.language
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "record_id": event.event_id,
        "timestamps": {
            "created": _iso(first.recorded_at),
            "effective_from": _iso(first.recorded_at),
            "expires": _iso(first.expires_at) if first.expires_at else None,
        },
        "data_subject": {
            "id": view.subject_id,
            "id_type": "pseudonymous subject id",
            "kind": view.kind,
        },
        "controller": CONTROLLER,
        "jurisdiction": {"country": view.country, "law": "GDPR (EU) 2016/679 and national law"},
        "consent_given_by": giver,
        "method": {
            "channel": first.channel,
            "interaction": "web form, one answer per purpose, confirmed on a summary page",
            "recorded_by": first.recorded_by,
        },
        "notice": {
            "form_id": form.id,
            "country": form.country_code,
            "version": form.version,
            "language": language,
            "form_sha256": form.sha256,
            "text_audience": {"guardian": "guardian", "student": "child", "teacher": "adult"}[decided_by],
            "text_sha256": first.text_sha256,
            "hash_algorithm": "SHA-256",
        },
        "processing": [
            {
                "purpose": row.purpose,
                "consent_status": STATE.get(row.choice, row.choice),
                "explicit": row.purpose == SPECIAL,
                "legal_basis": "GDPR Art. 9(2)(a)" if row.purpose == SPECIAL else "GDPR Art. 6(1)(a)",
            }
            for row in event.rows
        ],
        "withdrawal": {
            "how": "Open a new link from the school and choose 'What you agreed to', then 'Withdraw'.",
            "effect": "Data for that purpose stop being used and are erased from the research data.",
        },
        "event_history": _history(history),
    }
