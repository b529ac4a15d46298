"""The DPO's pages over HTTP: who may open them, approving a proposal through the form (audited), the
second approver a large budget needs, refusals shown as messages naming the field, and the
data-subject request queue with its complete and extend forms."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.principal import Principal
from access.projects import service as projects
from access.projects.models import ProjectStatus, ResearchProject
from consent.identity import IdentityProtector
from consent.requests import service as requests
from consent.requests.deadlines import utc_today
from consent.requests.models import DataSubjectRequest, RequestState
from consent.requests.schemas import RequestCreate
from enclave.components import Components
from tests.support.auth import StaffUser, sign_in
from tests.support.consent import make_student
from tests.support.projects import TODAY, make_principal, proposal

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def _open_as(client: TestClient, user: StaffUser) -> None:
    client.cookies.clear()
    client.cookies.set("staff_session", sign_in(client, user)["access_token"], path="/staff")


def _submitted(session: Session, epsilon: str = "1.5") -> ResearchProject:
    researcher = make_principal(session, Role.researcher)
    project = projects.create_project(session, researcher, proposal(requested_epsilon=epsilon))
    projects.submit_project(session, researcher, project.id)
    session.commit()
    return project


def _approval_form(token: str, epsilon: str = "1.0", **overrides: object) -> dict[str, object]:
    form: dict[str, object] = {
        "csrf_token": token,
        "granted_epsilon": epsilon,
        "datasets": ["wave1_students"],
        "variables": ["wave1_students.ses_band", "wave1_students.stage"],
        "end_date": (TODAY + timedelta(days=300)).isoformat(),
    }
    form.update(overrides)
    return form


def _entries(session: Session, project_id: str) -> list[tuple[str, str, str]]:
    session.commit()
    rows = session.scalars(
        select(AuditEntry).where(AuditEntry.project_id == project_id).order_by(AuditEntry.seq)
    )
    return [(e.action, e.outcome, e.actor_id) for e in rows]


@pytest.fixture
def dpo(staff_factory) -> StaffUser:
    return staff_factory(roles=[Role.dpo])


@pytest.fixture
def protector(components: Components) -> IdentityProtector:
    return IdentityProtector(components.keys)


def test_visitors_sign_in_first_and_other_roles_are_told_they_may_not(client, staff_factory):
    response = client.get("/staff/dpo/projects", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/staff/login?next=%2Fstaff%2Fdpo%2Fprojects"
    _open_as(client, staff_factory(roles=[Role.researcher]))
    refused = client.get("/staff/dpo")
    assert refused.status_code == 403
    assert "Not allowed" in refused.text


def test_home_lists_the_proposal_waiting_and_links_budgets_and_audit(client, dpo, db_session):
    project = _submitted(db_session)
    _open_as(client, dpo)
    home = client.get("/staff/dpo")
    assert home.status_code == 200
    assert project.title in home.text
    assert f'href="/staff/dpo/projects/{project.id}"' in home.text
    for link in ("/staff/budgets", "/staff/audit", "/staff/dpo/requests"):
        assert f'href="{link}"' in home.text


def test_dpo_approves_through_the_form_and_the_approval_is_in_the_ledger(client, dpo, db_session):
    project = _submitted(db_session)
    _open_as(client, dpo)
    page = client.get(f"/staff/dpo/projects/{project.id}")
    assert page.status_code == 200
    assert "Approve with terms" in page.text
    forged = client.post(f"/staff/dpo/projects/{project.id}/approve", data=_approval_form("0" * 64))
    assert forged.status_code == 400
    assert "The form has expired" in forged.text

    done = client.post(f"/staff/dpo/projects/{project.id}/approve", data=_approval_form(_csrf(page.text)))
    assert done.status_code == 200, done.text
    assert "Approved. The budget and access are granted." in done.text
    db_session.refresh(project)
    assert project.status == ProjectStatus.active.value
    assert str(project.granted_epsilon.normalize()) == "1"
    assert project.allowed_datasets == ["wave1_students"]
    assert ("project.approved", "ok", dpo.account_id) in _entries(db_session, project.id)


def test_a_budget_above_the_threshold_shows_that_a_second_approver_is_needed(
    client, dpo, staff_factory, db_session
):
    project = _submitted(db_session, epsilon="3")
    _open_as(client, dpo)
    token = _csrf(client.get(f"/staff/dpo/projects/{project.id}").text)
    first = client.post(f"/staff/dpo/projects/{project.id}/approve", data=_approval_form(token, "2.5"))
    assert first.status_code == 200
    assert "Your approval is recorded." in first.text
    assert "A second approver is still needed" in first.text
    assert "1 of 2 approvals are recorded" in first.text
    assert 'action="/staff/dpo/projects/' + project.id + '/approve"' not in first.text  # not twice
    db_session.refresh(project)
    assert project.status == ProjectStatus.submitted.value

    # An administrator confirms the same terms: the project is approved.
    _open_as(client, staff_factory(roles=[Role.admin]))
    second_page = client.get(f"/staff/dpo/projects/{project.id}")
    assert "A second approver is still needed" in second_page.text
    assert 'value="2.5"' in second_page.text  # the form starts from the first approval's terms
    second = client.post(
        f"/staff/dpo/projects/{project.id}/approve", data=_approval_form(_csrf(second_page.text), "2.5")
    )
    assert "Approved." in second.text
    db_session.refresh(project)
    assert project.status == ProjectStatus.active.value
    actions = [a for a, _, _ in _entries(db_session, project.id)]
    assert actions[-3:-1] == ["project.approval_recorded", "project.approved"]


@pytest.mark.parametrize(
    "case",
    [
        ({"granted_epsilon": ""}, 422, "Privacy budget (ε): enter a number above 0"),
        ({"granted_epsilon": "abc"}, 422, "Privacy budget (ε): enter a number above 0"),
        (
            {"granted_epsilon": "1.6"},
            422,
            "Privacy budget (ε): granted_epsilon 1.6 exceeds the requested 1.5",
        ),
        ({"datasets": []}, 422, "Datasets: choose or enter a value."),
        ({"end_date": "next year"}, 422, "Last day of access: enter a date as YYYY-MM-DD."),
        (
            {"end_date": (TODAY + timedelta(days=900)).isoformat()},
            422,
            "Last day of access: end_date may not be later than the requested",
        ),
    ],
)
def test_bad_approval_terms_are_explained_next_to_the_field(client, dpo, db_session, case):
    overrides, status, message = case
    project = _submitted(db_session)
    _open_as(client, dpo)
    token = _csrf(client.get(f"/staff/dpo/projects/{project.id}").text)
    response = client.post(
        f"/staff/dpo/projects/{project.id}/approve", data=_approval_form(token, **overrides)
    )
    assert response.status_code == status
    assert "The approval was not recorded." in response.text
    assert message in response.text
    assert 'aria-invalid="true"' in response.text or "fieldset aria-describedby" in response.text
    db_session.refresh(project)
    assert project.status == ProjectStatus.submitted.value


def test_request_changes_needs_a_note_and_then_sends_the_proposal_back(client, dpo, db_session):
    project = _submitted(db_session)
    _open_as(client, dpo)
    token = _csrf(client.get(f"/staff/dpo/projects/{project.id}").text)
    url = f"/staff/dpo/projects/{project.id}/decision"
    missing = client.post(url, data={"csrf_token": token, "note": "Please narrow the variables."})
    assert missing.status_code == 422
    assert "Decision: choose request changes or reject." in missing.text
    short = client.post(url, data={"csrf_token": token, "decision": "request_changes", "note": "x"})
    assert short.status_code == 422
    assert "Note to the researchers: write at least 3 characters" in short.text
    done = client.post(
        url, data={"csrf_token": token, "decision": "request_changes", "note": "Please narrow the variables."}
    )
    assert "Changes requested." in done.text
    db_session.refresh(project)
    assert project.status == ProjectStatus.changes_requested.value
    assert project.decision_note == "Please narrow the variables."
    # Deciding again on a project that is no longer submitted is explained, not a server error.
    again = client.post(url, data={"csrf_token": token, "decision": "reject", "note": "Too late now."})
    assert again.status_code == 409
    assert "cannot reject a project that is changes_requested" in again.text


def test_an_administrator_may_not_reject(client, staff_factory, db_session):
    project = _submitted(db_session)
    _open_as(client, staff_factory(roles=[Role.admin]))
    page = client.get(f"/staff/dpo/projects/{project.id}")
    assert page.status_code == 200
    assert "Request changes or reject" not in page.text
    refused = client.post(
        f"/staff/dpo/projects/{project.id}/decision",
        data={"csrf_token": _csrf(page.text), "decision": "reject", "note": "Not for admins."},
    )
    assert refused.status_code == 403


def test_unknown_project_and_request_are_a_not_found_page(client, dpo):
    _open_as(client, dpo)
    for url in ("/staff/dpo/projects/not-an-id", "/staff/dpo/requests/00000000-0000-0000-0000-000000000000"):
        response = client.get(url)
        assert response.status_code == 404
        assert "not found" in response.text


def _request(
    session: Session, protector: IdentityProtector, dpo: StaffUser, received_days_ago: int
) -> DataSubjectRequest:
    principal = Principal(account_id=dpo.account_id, roles=frozenset({Role.dpo}))
    student = make_student(session, protector)
    body = RequestCreate.model_validate(
        {
            "kind": "access",
            "subject_kind": "student",
            "subject_id": student.subject_id,
            "requested_by": "guardian",
            "language": "bg",
            "received_on": (utc_today() - timedelta(days=received_days_ago)).isoformat(),
        }
    )
    request = requests.create_request(session, principal, protector, body)
    session.commit()
    return request


def test_request_queue_lists_the_overdue_first_with_their_deadlines(client, dpo, db_session, protector):
    recent = _request(db_session, protector, dpo, received_days_ago=2)
    late = _request(db_session, protector, dpo, received_days_ago=40)
    _open_as(client, dpo)
    queue = client.get("/staff/dpo/requests")
    assert queue.status_code == 200
    assert "1 request is overdue" in queue.text
    assert queue.text.index(late.id) < queue.text.index(recent.id)
    assert late.due_on.isoformat() in queue.text
    assert "days overdue" in queue.text
    home = client.get("/staff/dpo")
    assert late.id in home.text


def test_dpo_extends_once_with_a_reason_then_completes(client, dpo, db_session, protector):
    request = _request(db_session, protector, dpo, received_days_ago=3)
    _open_as(client, dpo)
    page = client.get(f"/staff/dpo/requests/{request.id}")
    token = _csrf(page.text)
    url = f"/staff/dpo/requests/{request.id}"
    no_reason = client.post(f"{url}/extend", data={"csrf_token": token, "months": "2", "reason": " "})
    assert no_reason.status_code == 422
    assert "Reason for the extension: write why more time is needed" in no_reason.text
    extended = client.post(
        f"{url}/extend", data={"csrf_token": token, "months": "1", "reason": "Records held at two schools."}
    )
    assert "Deadline extended." in extended.text
    assert "Records held at two schools." in extended.text
    assert "cannot be extended again" in extended.text
    twice = client.post(f"{url}/extend", data={"csrf_token": token, "months": "1", "reason": "Again."})
    assert twice.status_code == 409
    assert "a deadline is extended once only" in twice.text
    done = client.post(f"{url}/complete", data={"csrf_token": token, "outcome": "Export sent by post."})
    assert "Request completed and closed." in done.text
    db_session.refresh(request)
    assert request.state == RequestState.completed.value
    assert request.outcome == "Export sent by post."
    db_session.commit()
    actions = db_session.scalars(
        select(AuditEntry.action).where(AuditEntry.target_id == request.subject_id).order_by(AuditEntry.seq)
    ).all()
    assert "consent.dsr_extended" in actions
    assert "consent.dsr_completed" in actions


def test_a_steward_follows_the_queue_but_cannot_act(client, staff_factory, dpo, db_session, protector):
    request = _request(db_session, protector, dpo, received_days_ago=3)
    steward = staff_factory(roles=[Role.data_steward], country="BG")
    _open_as(client, steward)
    page = client.get(f"/staff/dpo/requests/{request.id}")
    assert page.status_code == 200
    assert "Complete the request" not in page.text
    refused = client.post(f"/staff/dpo/requests/{request.id}/complete", data={"csrf_token": _csrf(page.text)})
    assert refused.status_code == 403
