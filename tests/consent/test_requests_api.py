"""Data-subject requests over HTTP with real bearer tokens: roles, scope, problem documents, exports."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from consent.decisions.models import Withdrawal
from consent.requests.deadlines import due_on, utc_today
from tests.consent.test_requests_service import decide, payload
from tests.support.auth import auth_headers
from tests.support.consent import make_form, make_guardian, make_student

PROBLEM = "application/problem+json"
REQUESTS = "/api/consent/requests"


@pytest.fixture
def headers(client, staff_factory):
    made = {}

    def for_role(role: Role, country: str | None = None, schools: list[str] | None = None) -> dict[str, str]:
        key = (role, country, tuple(schools or ()))
        if key not in made:
            made[key] = auth_headers(client, staff_factory(roles=[role], country=country, schools=schools))
        return made[key]

    return for_role


@pytest.fixture
def student(db_session, protector):
    form = make_form(db_session)
    student = make_student(db_session, protector, ref="P-API-1")
    guardian = make_guardian(db_session, protector, [student], name="=cmd|' /C calc'!A0")
    decide(db_session, form, student=student, guardian=guardian)
    return student


def _problem(answer, status: int, reason: str | None = None) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.json()
    if reason is not None:
        assert body["reason"] == reason, body
    return body


def test_a_dpo_records_a_request_due_one_calendar_month_later(client, headers, student):
    answer = client.post(
        REQUESTS, json=payload(student.subject_id, note="by letter"), headers=headers(Role.dpo)
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    today = utc_today()
    assert body["received_on"] == today.isoformat()
    assert body["due_on"] == due_on(today).isoformat()
    assert body["effective_due_on"] == body["due_on"]
    assert body["state"] == "open"
    assert body["extended"] is False
    assert body["overdue"] is False
    assert body["days_left"] == (due_on(today) - today).days
    assert body["details"] == {"note": "by letter"}
    again = client.get(f"{REQUESTS}/{body['id']}", headers=headers(Role.dpo))
    assert again.json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "deletion"}, "kind"),
        ({"subject_kind": "parent"}, "subject_kind"),
        ({"subject_id": "not-a-uuid"}, "subject_id"),
        ({"requested_by": "lawyer"}, "requested_by"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_field(client, headers, student, change, field):
    answer = client.post(REQUESTS, json={**payload(student.subject_id), **change}, headers=headers(Role.dpo))
    body = _problem(answer, 422)
    assert field in answer.text, body


def test_received_on_in_the_future_is_refused(client, headers, student):
    tomorrow = utc_today() + timedelta(days=1)
    answer = client.post(
        REQUESTS, json=payload(student.subject_id, received_on=tomorrow), headers=headers(Role.dpo)
    )
    _problem(answer, 422, "received_in_future")


def test_an_unknown_language_and_a_rectification_without_values_are_refused(client, headers, student):
    dpo = headers(Role.dpo)
    language = client.post(REQUESTS, json={**payload(student.subject_id), "language": "xx"}, headers=dpo)
    _problem(language, 422, "unknown_language")
    empty = client.post(REQUESTS, json=payload(student.subject_id, kind="rectification"), headers=dpo)
    _problem(empty, 422, "no_changes")
    unknown_field = payload(student.subject_id, kind="rectification", changes={"nickname": "x"})
    _problem(client.post(REQUESTS, json=unknown_field, headers=dpo), 422)


def test_an_unknown_subject_and_a_subject_outside_the_stewards_scope_are_both_not_found(
    client, headers, student
):
    unknown = client.post(
        REQUESTS, json=payload("00000000-0000-4000-8000-000000000000"), headers=headers(Role.dpo)
    )
    _problem(unknown, 404, "subject_not_found")
    spain = headers(Role.data_steward, "ES")
    outside = client.post(REQUESTS, json=payload(student.subject_id), headers=spain)
    _problem(outside, 404, "subject_not_found")
    bulgaria = headers(Role.data_steward, "BG", ["BG-SOF-001"])
    inside = client.post(REQUESTS, json=payload(student.subject_id), headers=bulgaria)
    assert inside.status_code == 201, inside.text
    request_id = inside.json()["id"]
    _problem(client.get(f"{REQUESTS}/{request_id}", headers=spain), 404, "request_not_found")
    assert client.get(REQUESTS, headers=spain).json() == []
    assert [r["id"] for r in client.get(REQUESTS, headers=bulgaria).json()] == [request_id]
    started = client.post(f"{REQUESTS}/{request_id}/start", headers=bulgaria)
    assert started.json()["state"] == "in_progress"


def test_only_the_dpo_extends_refuses_completes_and_downloads(client, headers, student):
    request_id = client.post(REQUESTS, json=payload(student.subject_id), headers=headers(Role.dpo)).json()[
        "id"
    ]
    steward = headers(Role.data_steward, "BG")
    for method, suffix, body in (
        ("POST", "/extend", {"reason": "volume"}),
        ("POST", "/refuse", {"reason": "unfounded"}),
        ("POST", "/complete", {}),
        ("GET", "/export", None),
    ):
        answer = client.request(method, f"{REQUESTS}/{request_id}{suffix}", json=body, headers=steward)
        _problem(answer, 403)
    for role in (Role.researcher, Role.legal_reviewer, Role.admin):
        _problem(client.get(REQUESTS, headers=headers(role)), 403)
        _problem(client.post(REQUESTS, json=payload(student.subject_id), headers=headers(role)), 403)


def test_the_queue_lists_overdue_requests_first_with_days_left(client, headers, student):
    dpo = headers(Role.dpo)
    today = utc_today()
    ids = {}
    for name, days_ago in (("fresh", 0), ("oldest", 80), ("late", 45), ("recent", 10)):
        body = payload(student.subject_id, received_on=today - timedelta(days=days_ago))
        ids[name] = client.post(REQUESTS, json=body, headers=dpo).json()["id"]
    queue = client.get(REQUESTS, headers=dpo).json()
    assert [item["id"] for item in queue] == [ids["oldest"], ids["late"], ids["recent"], ids["fresh"]]
    assert [item["overdue"] for item in queue] == [True, True, False, False]
    assert queue[0]["days_left"] < queue[1]["days_left"] < 0 <= queue[2]["days_left"]
    late = client.get(REQUESTS, params={"overdue": "true"}, headers=dpo).json()
    assert [item["id"] for item in late] == [ids["oldest"], ids["late"]]
    none = client.get(REQUESTS, params={"state": "completed", "kind": "access"}, headers=dpo).json()
    assert none == []
    _problem(client.get(REQUESTS, params={"state": "lost"}, headers=dpo), 422)


def test_an_extension_needs_a_reason_and_happens_once(client, headers, student):
    dpo = headers(Role.dpo)
    request_id = client.post(REQUESTS, json=payload(student.subject_id), headers=dpo).json()["id"]
    _problem(client.post(f"{REQUESTS}/{request_id}/extend", json={"reason": "  "}, headers=dpo), 422)
    _problem(client.post(f"{REQUESTS}/{request_id}/extend", json={}, headers=dpo), 422)
    _problem(
        client.post(f"{REQUESTS}/{request_id}/extend", json={"reason": "x", "months": 3}, headers=dpo), 422
    )
    extended = client.post(f"{REQUESTS}/{request_id}/extend", json={"reason": "Many sources"}, headers=dpo)
    assert extended.status_code == 200, extended.text
    body = extended.json()
    assert body["extended"] is True
    assert body["extension_reason"] == "Many sources"
    assert body["effective_due_on"] == body["extended_due_on"] > body["due_on"]
    again = client.post(f"{REQUESTS}/{request_id}/extend", json={"reason": "more"}, headers=dpo)
    _problem(again, 409, "already_extended")


def test_a_completed_request_answers_409_to_any_further_change(client, headers, student):
    dpo = headers(Role.dpo)
    request_id = client.post(REQUESTS, json=payload(student.subject_id), headers=dpo).json()["id"]
    done = client.post(f"{REQUESTS}/{request_id}/complete", headers=dpo)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "completed"
    assert done.json()["days_left"] is None
    for suffix, body in (
        ("/complete", {}),
        ("/refuse", {"reason": "no"}),
        ("/extend", {"reason": "x"}),
        ("/start", {}),
    ):
        _problem(
            client.post(f"{REQUESTS}/{request_id}{suffix}", json=body, headers=dpo), 409, "request_closed"
        )
    _problem(client.post(f"{REQUESTS}/00000000-0000-4000-8000-000000000000/start", headers=dpo), 404)


def test_the_access_export_downloads_as_json_and_csv_and_each_download_is_audited(
    client, headers, student, db_session
):
    dpo = headers(Role.dpo)
    request_id = client.post(REQUESTS, json=payload(student.subject_id), headers=dpo).json()["id"]
    as_json = client.get(f"{REQUESTS}/{request_id}/export", headers=dpo)
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"].startswith("application/json")
    assert "attachment" in as_json.headers["content-disposition"]
    document = as_json.json()
    assert document["identity"]["pupil_reference"] == "P-API-1"
    assert [d["purpose"] for d in document["decisions"]] == ["questionnaires"]
    assert [e["action"] for e in document["ledger"]] == ["consent.dsr_received"]
    assert document["datasets"] == []
    as_csv = client.get(f"{REQUESTS}/{request_id}/export", params={"format": "csv"}, headers=dpo)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    names = [value for section, _, field, value in rows if field == "guardians.0.name"]
    assert names == ["'=cmd|' /C calc'!A0"]
    downloads = db_session.execute(
        select(AuditEntry).where(
            AuditEntry.action == "consent.dsr_export_downloaded", AuditEntry.target_id == student.subject_id
        )
    ).scalars()
    assert [entry.details["format"] for entry in downloads] == ["json", "csv"]
    _problem(client.get(f"{REQUESTS}/{request_id}/export", params={"format": "xml"}, headers=dpo), 422)


def test_completing_an_erasure_over_http_emits_a_withdrawal(client, headers, student, db_session):
    dpo = headers(Role.dpo)
    body = payload(student.subject_id, kind="erasure")
    request_id = client.post(REQUESTS, json=body, headers=dpo).json()["id"]
    _problem(client.get(f"{REQUESTS}/{request_id}/export", headers=dpo), 409, "not_access")
    done = client.post(f"{REQUESTS}/{request_id}/complete", json={"outcome": "erased"}, headers=dpo)
    assert done.status_code == 200, done.text
    reasons = db_session.execute(
        select(Withdrawal.reason).where(Withdrawal.subject_id == student.subject_id)
    ).scalars()
    assert list(reasons) == ["erasure"]
    db_session.refresh(student)
    assert student.erased_at is not None
