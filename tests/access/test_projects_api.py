"""The projects API over HTTP, with real bearer tokens: roles, scoping, problem documents."""

from __future__ import annotations

from datetime import timedelta

import pytest

from access.audit.actions import Role
from access.projects.agreement import current_agreement
from tests.support.auth import auth_headers
from tests.support.projects import TODAY, proposal_payload

PROBLEM = "application/problem+json"
MISSING = "00000000-0000-4000-8000-000000000000"


ROLES = {
    "owner": [Role.researcher],
    "stranger": [Role.researcher],
    "dpo": [Role.dpo],
    "dpo2": [Role.dpo],
    "admin": [Role.admin],
    "legal": [Role.legal_reviewer],
    "steward": [Role.data_steward],
}


class Callers:
    """Signed-in staff by name, created on first use (each sign-in hashes a password)."""

    def __init__(self, client, staff_factory):
        self._client = client
        self._factory = staff_factory
        self._users = {}
        self._headers = {}

    def __getitem__(self, name: str) -> dict[str, str]:
        if name not in self._headers:
            self._users[name] = self._factory(roles=ROLES[name])
            self._headers[name] = auth_headers(self._client, self._users[name])
        return self._headers[name]

    def id(self, name: str) -> str:
        self[name]
        return self._users[name].account_id


@pytest.fixture
def callers(client, staff_factory):
    """Signed-in headers for two researchers, two DPOs, an admin, a legal reviewer and a steward."""
    return Callers(client, staff_factory)


def _create(client, headers, **overrides):
    response = client.post("/api/projects", json=proposal_payload(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _approval(epsilon="1.0", **overrides):
    body = {
        "granted_epsilon": epsilon,
        "datasets": ["wave1_students"],
        "variables": ["wave1_students.ses_band"],
        "end_date": (TODAY + timedelta(days=300)).isoformat(),
    }
    body.update(overrides)
    return body


def _problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()


def test_a_researcher_creates_a_draft_and_epsilon_is_answered_as_a_decimal_string(client, callers):
    project = _create(client, callers["owner"], requested_epsilon=0.1)
    assert project["status"] == "draft"
    assert project["requested_epsilon"] == "0.1"
    assert project["owner_id"] == callers.id("owner")
    assert [m["role"] for m in project["members"]] == ["owner"]
    assert project["agreement_sha256"] == current_agreement().sha256


def test_the_current_agreement_is_served_with_its_hash(client, callers):
    body = client.get("/api/projects/agreement", headers=callers["owner"]).json()
    agreement = current_agreement()
    assert (body["version"], body["sha256"]) == (agreement.version, agreement.sha256)
    assert body["text"].startswith("# LET'S CARE research enclave")


def test_the_whole_approval_flow_over_http(client, callers):
    project = _create(client, callers["owner"])
    url = f"/api/projects/{project['id']}"
    assert client.post(f"{url}/submit", headers=callers["owner"]).json()["status"] == "submitted"
    approved = client.post(f"{url}/approve", json=_approval(), headers=callers["dpo"])
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["status"], body["granted_epsilon"], body["allowed_variables"]) == (
        "active",
        "1",
        ["wave1_students.ses_band"],
    )
    assert body["approvals"][0]["approver_id"] == callers.id("dpo")
    suspended = client.post(f"{url}/suspend", json={"note": "Clause 2 breach."}, headers=callers["admin"])
    assert suspended.json()["status"] == "suspended"
    assert client.get(url, headers=callers["owner"]).json()["decision_note"] == "Clause 2 breach."
    assert client.post(f"{url}/reinstate", headers=callers["dpo2"]).json()["status"] == "active"
    assert client.post(f"{url}/close", headers=callers["owner"]).json()["status"] == "closed"


def test_a_large_grant_waits_for_a_second_approver_over_http(client, callers):
    project = _create(client, callers["owner"], requested_epsilon="3")
    url = f"/api/projects/{project['id']}"
    client.post(f"{url}/submit", headers=callers["owner"])
    first = client.post(f"{url}/approve", json=_approval("2.5"), headers=callers["dpo"]).json()
    assert (first["status"], first["approvals_required"], len(first["approvals"])) == ("submitted", 2, 1)
    again = _problem(client.post(f"{url}/approve", json=_approval("2.5"), headers=callers["dpo"]), 409)
    assert again["reason"] == "same_approver"
    second = client.post(f"{url}/approve", json=_approval("2.5"), headers=callers["admin"]).json()
    assert second["status"] == "active"


def test_illegal_transition_answers_409_naming_the_current_state(client, callers):
    project = _create(client, callers["owner"])
    body = _problem(
        client.post(f"/api/projects/{project['id']}/approve", json=_approval(), headers=callers["dpo"]), 409
    )
    assert body["current_status"] == "draft"
    assert "cannot approve a project that is draft" in body["detail"]


def test_another_researchers_project_answers_404_like_a_missing_one(client, callers):
    project = _create(client, callers["owner"])
    url = f"/api/projects/{project['id']}"
    hidden = _problem(client.get(url, headers=callers["stranger"]), 404)
    missing = _problem(client.get(f"/api/projects/{MISSING}", headers=callers["stranger"]), 404)
    assert hidden["title"] == missing["title"]
    _problem(client.post(f"{url}/submit", headers=callers["stranger"]), 404)
    _problem(client.post(f"{url}/close", headers=callers["stranger"]), 404)
    assert client.get("/api/projects", headers=callers["stranger"]).json()["total"] == 0


def test_the_list_is_scoped_and_paginated(client, callers):
    ids = {_create(client, callers["owner"])["id"] for _ in range(3)}
    page = client.get("/api/projects?limit=2&offset=0", headers=callers["owner"]).json()
    rest = client.get("/api/projects?limit=2&offset=2", headers=callers["owner"]).json()
    assert (page["total"], len(page["items"]), len(rest["items"])) == (3, 2, 1)
    assert {p["id"] for p in page["items"] + rest["items"]} == ids
    reviewer = client.get("/api/projects?status=draft&limit=100", headers=callers["legal"]).json()
    assert ids <= {p["id"] for p in reviewer["items"]}
    assert client.get("/api/projects", headers=callers["steward"]).json()["total"] == 0


@pytest.mark.parametrize(
    ("caller", "path", "body"),
    [
        ("steward", "", "proposal"),
        ("dpo", "", "proposal"),
        ("legal", "/{id}/approve", "approval"),
        ("owner", "/{id}/approve", "approval"),
        ("admin", "/{id}/reject", "note"),
        ("legal", "/{id}/suspend", "note"),
        ("owner", "/{id}/reinstate", None),
        ("legal", "/{id}/close", None),
    ],
)
def test_roles_that_may_not_act_get_403(client, callers, caller, path, body):
    project = _create(client, callers["owner"])
    bodies = {
        "proposal": proposal_payload(),
        "approval": _approval(),
        "note": {"note": "Some reason."},
        None: None,
    }
    response = client.post(
        "/api/projects" + path.format(id=project["id"]), json=bodies[body], headers=callers[caller]
    )
    _problem(response, 403)


def test_calls_without_a_token_get_401(client):
    _problem(client.get("/api/projects"), 401)


def test_self_approval_is_refused_over_http(client, staff_factory):
    both = staff_factory(roles=[Role.researcher, Role.dpo])
    headers = auth_headers(client, both)
    project = _create(client, headers)
    client.post(f"/api/projects/{project['id']}/submit", headers=headers)
    body = _problem(
        client.post(f"/api/projects/{project['id']}/approve", json=_approval(), headers=headers), 403
    )
    assert body["reason"] == "own_project"


def test_members_are_added_by_the_owner_and_then_see_the_project(client, callers):
    project = _create(client, callers["owner"])
    url = f"/api/projects/{project['id']}"
    added = client.post(
        f"{url}/members", json={"account_id": callers.id("stranger")}, headers=callers["owner"]
    )
    assert added.status_code == 201, added.text
    assert [m["role"] for m in added.json()["members"]] == ["owner", "member"]
    assert client.get(url, headers=callers["stranger"]).status_code == 200
    refused = client.post(f"{url}/members", json={"account_id": callers.id("dpo")}, headers=callers["owner"])
    assert _problem(refused, 422)["reason"] == "not_a_researcher"


def test_outdated_agreement_and_expired_training_are_refused_over_http(client, callers):
    outdated = proposal_payload(agreement={"version": "0.9", "sha256": "a" * 64, "accepted": True})
    body = _problem(client.post("/api/projects", json=outdated, headers=callers["owner"]), 409)
    assert body["reason"] == "agreement_outdated"
    expired = {"reference": "CERT-1", "expires_on": (TODAY - timedelta(days=1)).isoformat()}
    project = _create(client, callers["owner"], training=expired)
    body = _problem(client.post(f"/api/projects/{project['id']}/submit", headers=callers["owner"]), 409)
    assert body["reason"] == "training_expired"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"requested_epsilon": 0}, "requested_epsilon"),
        ({"requested_epsilon": "-1"}, "requested_epsilon"),
        ({"requested_epsilon": "11"}, "requested_epsilon"),
        ({"requested_epsilon": "NaN"}, "requested_epsilon"),
        ({"requested_epsilon": "one"}, "requested_epsilon"),
        ({"requested_epsilon": "0.123456"}, "requested_epsilon"),
        ({"start_date": "2026-13-01"}, "start_date"),
        ({"purpose": "marketing"}, "purpose"),
        ({"lawful_basis": "legitimate_interest"}, "lawful_basis"),
        ({"datasets": []}, "datasets"),
        ({"datasets": ["Wave 1"]}, "datasets"),
        ({"variables": ["ses_band"]}, "variables"),
        ({"variables": ["wave1_students.ses_band", "wave1_students.ses_band"]}, "variables"),
        ({"justification": "short"}, "justification"),
        ({"agreement": {"version": "1.0", "sha256": "x", "accepted": True}}, "agreement.sha256"),
        ({"agreement": {"version": "1.0", "sha256": "a" * 64, "accepted": False}}, "agreement.accepted"),
        ({"title": None}, "title"),
        ({"title": "A title\u0000 with a NUL"}, "title"),
        ({"justification": "A long enough justification\u0007 with a bell."}, "justification"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_malformed_proposals_get_422_naming_the_field(client, callers, overrides, field):
    body = _problem(
        client.post("/api/projects", json=proposal_payload(**overrides), headers=callers["owner"]), 422
    )
    assert field in body["detail"], body


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"end_date": TODAY.isoformat()}, "end_before_start"),
        ({"end_date": (TODAY + timedelta(days=2000)).isoformat()}, "too_long"),
        ({"variables": ["wave9.x"]}, "variable_outside_datasets"),
        ({"purpose": "special_category"}, "special_category_condition_missing"),
    ],
)
def test_inconsistent_proposals_get_422_with_a_reason(client, callers, overrides, reason):
    body = _problem(
        client.post("/api/projects", json=proposal_payload(**overrides), headers=callers["owner"]), 422
    )
    assert body["reason"] == reason


def test_bad_approval_terms_get_422_never_500(client, callers):
    project = _create(client, callers["owner"])
    url = f"/api/projects/{project['id']}"
    client.post(f"{url}/submit", headers=callers["owner"])
    over = _problem(client.post(f"{url}/approve", json=_approval("1.6"), headers=callers["dpo"]), 422)
    assert over["reason"] == "epsilon_above_request"
    _problem(client.post(f"{url}/approve", json=_approval(end_date="tomorrow"), headers=callers["dpo"]), 422)
    _problem(client.post(f"{url}/approve", content=b"{not json", headers=callers["dpo"]), 422)
    assert client.get(url, headers=callers["owner"]).json()["status"] == "submitted"


def test_malformed_project_ids_and_queries_get_422(client, callers):
    _problem(client.get("/api/projects/not-a-uuid", headers=callers["dpo"]), 422)
    _problem(client.get("/api/projects?limit=0", headers=callers["dpo"]), 422)
    _problem(client.get("/api/projects?status=archived", headers=callers["dpo"]), 422)


def test_an_update_changes_only_the_fields_given(client, callers):
    project = _create(client, callers["owner"])
    url = f"/api/projects/{project['id']}"
    changed = client.patch(url, json={"title": "A sharper title"}, headers=callers["owner"])
    assert changed.status_code == 200, changed.text
    assert (changed.json()["title"], changed.json()["requested_epsilon"]) == ("A sharper title", "1.5")
    _problem(client.patch(url, json={}, headers=callers["owner"]), 422)
    _problem(client.patch(url, json={"title": None}, headers=callers["owner"]), 422)
