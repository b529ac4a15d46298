"""The country-rules API over HTTP with real bearer tokens: who may write, problem documents, no 500."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from access.audit.actions import Role
from consent.service import utc_today
from tests.support.auth import auth_headers

PROBLEM = "application/problem+json"
RULES = "/api/consent/rules"


def payload(**overrides):
    values = {
        "effective_from": (utc_today() + timedelta(days=60)).isoformat(),
        "age_of_digital_consent": 14,
        "self_consent_age": 18,
        "joint_consent_from_age": 14,
        "joint_consent_to_age": 18,
        "assent_from_age": 7,
        "guardians_required": "all",
        "languages": ["bg"],
        "letscare_country": True,
        "legal_source": "Personal Data Protection Act art. 25c",
        "verified": "yes",
        "notes": "confirmed by the legal partner",
    }
    values.update(overrides)
    return values


@pytest.fixture
def headers(client, staff_factory):
    made = {}

    def for_role(role: Role) -> dict[str, str]:
        if role not in made:
            made[role] = auth_headers(client, staff_factory(roles=[role]))
        return made[role]

    return for_role


def test_a_dpo_loads_defaults_and_any_staff_member_reads_them(client, headers):
    answer = client.post(f"{RULES}/defaults", headers=headers(Role.dpo))
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["loaded"]) == 30
    again = client.post(f"{RULES}/defaults", headers=headers(Role.admin)).json()
    assert again["loaded"] == []
    assert len(again["skipped"]) == 30
    listed = client.get(RULES, headers=headers(Role.researcher))
    assert listed.status_code == 200
    assert len(listed.json()) == 30
    bulgaria = client.get(f"{RULES}/bg", headers=headers(Role.data_steward)).json()
    assert [v["effective_from"] for v in bulgaria] == ["2018-05-25"]
    assert bulgaria[0]["legal_source"] == "Personal Data Protection Act art. 25c"
    assert bulgaria[0]["effective_to"] is None


def test_a_new_version_takes_over_on_its_date(client, headers):
    client.post(f"{RULES}/defaults", headers=headers(Role.dpo))
    created = client.post(f"{RULES}/BG", json=payload(), headers=headers(Role.dpo))
    assert created.status_code == 201, created.text
    start = date.fromisoformat(created.json()["effective_from"])
    reader = headers(Role.researcher)
    before = client.get(
        f"{RULES}/BG/in-force", params={"on": (start - timedelta(days=1)).isoformat()}, headers=reader
    )
    assert before.json()["effective_from"] == "2018-05-25"
    assert before.json()["effective_to"] == start.isoformat()
    on = client.get(f"{RULES}/BG/in-force", params={"on": start.isoformat()}, headers=reader).json()
    assert on["id"] == created.json()["id"]
    assert on["guardians_required"] == "all"
    listed = client.get(RULES, params={"on": start.isoformat(), "country": "BG"}, headers=reader).json()
    assert [v["id"] for v in listed] == [created.json()["id"]]
    none = client.get(f"{RULES}/BG/in-force", params={"on": "2000-01-01"}, headers=reader)
    assert none.status_code == 404
    assert none.headers["content-type"].startswith(PROBLEM)


def test_the_same_effective_date_twice_is_a_conflict(client, headers):
    assert client.post(f"{RULES}/BG", json=payload(), headers=headers(Role.dpo)).status_code == 201
    again = client.post(
        f"{RULES}/BG", json=payload(self_consent_age=16, joint_consent_to_age=16), headers=headers(Role.admin)
    )
    assert again.status_code == 409
    assert again.json()["reason"] == "effective_from_taken"


@pytest.mark.parametrize(
    ("path", "overrides", "field"),
    [
        ("BG", {"self_consent_age": 26}, "body.self_consent_age"),
        ("BG", {"assent_from_age": -1}, "body.assent_from_age"),
        ("BG", {"joint_consent_to_age": 17}, "body.joint_consent_to_age"),
        ("BG", {"assent_from_age": 15}, "body.assent_from_age"),
        ("BG", {"languages": ["bul"]}, "body.languages.0"),
        ("BG", {"languages": ["zz"]}, "body.languages"),
        ("BG", {"languages": []}, "body.languages"),
        ("BG", {"effective_from": "2020-01-01"}, "body.effective_from"),
        ("BG", {"effective_from": "not a date"}, "body.effective_from"),
        ("BG", {"guardians_required": "some"}, "body.guardians_required"),
        ("BG", {"age_of_digital_consent": 12}, "body.age_of_digital_consent"),
        ("BG", {"unexpected": 1}, "body.unexpected"),
        ("XX", {}, "path.country"),
        ("BGR", {}, "path.country"),
    ],
)
def test_invalid_versions_are_refused_with_422_naming_the_field(client, headers, path, overrides, field):
    answer = client.post(f"{RULES}/{path}", json=payload(**overrides), headers=headers(Role.dpo))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert field in [e["field"] for e in answer.json()["errors"]]


@pytest.mark.parametrize("role", [Role.data_steward, Role.researcher, Role.legal_reviewer])
def test_only_a_dpo_or_admin_changes_rules(client, headers, role):
    assert client.post(f"{RULES}/BG", json=payload(), headers=headers(role)).status_code == 403
    assert client.post(f"{RULES}/defaults", headers=headers(role)).status_code == 403
    assert client.delete(f"{RULES}/BG/versions/1", headers=headers(role)).status_code == 403


def test_anonymous_callers_are_refused(client):
    assert client.get(RULES).status_code == 401
    assert client.post(f"{RULES}/BG", json=payload()).status_code == 401
    assert client.post(f"{RULES}/defaults").status_code == 401


def test_a_future_version_is_withdrawn_and_a_past_one_is_not(client, headers):
    dpo = headers(Role.dpo)
    client.post(f"{RULES}/defaults", headers=dpo)
    future = client.post(f"{RULES}/BG", json=payload(), headers=dpo).json()
    past = client.get(f"{RULES}/BG/in-force", headers=dpo).json()
    refused = client.delete(f"{RULES}/BG/versions/{past['id']}", headers=dpo)
    assert refused.status_code == 409
    assert refused.json()["reason"] == "version_already_effective"
    assert client.delete(f"{RULES}/ES/versions/{future['id']}", headers=dpo).status_code == 404
    assert client.delete(f"{RULES}/BG/versions/{future['id']}", headers=dpo).status_code == 204
    assert [v["id"] for v in client.get(f"{RULES}/BG", headers=dpo).json()] == [past["id"]]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", f"{RULES}?on=yesterday", None),
        ("GET", f"{RULES}?country=Bulgaria", None),
        ("GET", f"{RULES}?country=XX", None),
        ("GET", f"{RULES}/BG/in-force?on=2026-02-30", None),
        ("GET", f"{RULES}/%00%01", None),
        ("POST", f"{RULES}/BG", ["not", "an", "object"]),
        ("POST", f"{RULES}/BG", {"self_consent_age": "x" * 10_000}),
        ("DELETE", f"{RULES}/BG/versions/99999999999999999999", None),
        ("DELETE", f"{RULES}/BG/versions/abc", None),
    ],
)
def test_bad_input_never_causes_a_server_error(client, headers, method, url, body):
    answer = client.request(method, url, json=body, headers=headers(Role.dpo))
    assert 400 <= answer.status_code < 500, answer.text
