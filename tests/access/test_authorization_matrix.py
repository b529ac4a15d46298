"""Every route has an explicit access rule, and a real request with a real token of every role obeys it.

The rule of each route is read from the app itself: the ``allowed_roles`` of its role dependency,
``get_principal`` (any signed-in account) or nothing (public). It must equal the table below, so a
new endpoint without an entry here fails this test until someone decides who may call it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from access.audit.actions import Role
from access.dependencies import get_enrolling_principal, get_principal
from tests.support.auth import StaffUser, sign_in

PUBLIC = "public"
SIGNED_IN = "signed_in"
ENROLLING = "signed_in_or_enrolling"
Rule = str | frozenset[Role]

ADMIN = frozenset({Role.admin})
DPO = frozenset({Role.dpo})
DPO_OR_ADMIN = frozenset({Role.dpo, Role.admin})
REVIEWERS = frozenset({Role.dpo, Role.legal_reviewer})
RESEARCHER = frozenset({Role.researcher})

EXPECTED: dict[tuple[str, str], Rule] = {
    # system and documentation
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    # sign-in
    ("POST", "/api/auth/token"): PUBLIC,
    ("POST", "/api/auth/refresh"): PUBLIC,
    ("POST", "/api/auth/logout"): SIGNED_IN,
    ("GET", "/api/auth/me"): SIGNED_IN,
    ("POST", "/api/auth/password"): SIGNED_IN,
    ("POST", "/api/auth/mfa/enrol"): ENROLLING,
    ("POST", "/api/auth/mfa/confirm"): ENROLLING,
    # accounts
    ("POST", "/api/admin/accounts"): ADMIN,
    ("GET", "/api/admin/accounts"): ADMIN,
    ("GET", "/api/admin/accounts/{account_id}"): ADMIN,
    ("PATCH", "/api/admin/accounts/{account_id}"): ADMIN,
    ("POST", "/api/admin/accounts/{account_id}/suspend"): ADMIN,
    ("POST", "/api/admin/accounts/{account_id}/reactivate"): ADMIN,
    ("POST", "/api/admin/accounts/{account_id}/reset-mfa"): ADMIN,
    ("DELETE", "/api/admin/accounts/{account_id}"): ADMIN,
    # audit review
    ("GET", "/api/audit/entries"): REVIEWERS,
    ("GET", "/api/audit/export"): REVIEWERS,
    ("GET", "/api/audit/verify"): REVIEWERS,
    ("POST", "/api/audit/verify"): REVIEWERS,
    ("POST", "/api/audit/checkpoints"): DPO,
    ("GET", "/api/audit/checkpoints/latest"): REVIEWERS,
    ("POST", "/api/audit/signoffs"): REVIEWERS,
    ("GET", "/api/audit/signoffs"): REVIEWERS,
    # staff pages (session cookie holding the same access token)
    ("GET", "/staff/login"): PUBLIC,
    ("POST", "/staff/login"): PUBLIC,
    ("POST", "/staff/logout"): PUBLIC,
    ("GET", "/staff/audit"): REVIEWERS,
    ("GET", "/staff/audit/export"): REVIEWERS,
    ("GET", "/staff/audit/verify"): REVIEWERS,
    ("GET", "/staff/audit/signoffs"): REVIEWERS,
    ("POST", "/staff/audit/signoffs"): REVIEWERS,
    # research projects (finer rules, e.g. membership, are checked by the service)
    ("GET", "/api/projects/agreement"): SIGNED_IN,
    ("POST", "/api/projects"): RESEARCHER,
    ("GET", "/api/projects"): SIGNED_IN,
    ("GET", "/api/projects/{project_id}"): SIGNED_IN,
    ("PATCH", "/api/projects/{project_id}"): RESEARCHER,
    ("POST", "/api/projects/{project_id}/submit"): RESEARCHER,
    ("POST", "/api/projects/{project_id}/approve"): DPO_OR_ADMIN,
    ("POST", "/api/projects/{project_id}/reject"): DPO,
    ("POST", "/api/projects/{project_id}/request-changes"): DPO,
    ("POST", "/api/projects/{project_id}/suspend"): DPO_OR_ADMIN,
    ("POST", "/api/projects/{project_id}/reinstate"): DPO_OR_ADMIN,
    ("POST", "/api/projects/{project_id}/close"): SIGNED_IN,
    ("POST", "/api/projects/{project_id}/members"): RESEARCHER,
    # consent country rules (not personal data: every signed-in staff member may read them)
    ("GET", "/api/consent/rules"): SIGNED_IN,
    ("POST", "/api/consent/rules/defaults"): DPO_OR_ADMIN,
    ("GET", "/api/consent/rules/{country}"): SIGNED_IN,
    ("GET", "/api/consent/rules/{country}/in-force"): SIGNED_IN,
    ("POST", "/api/consent/rules/{country}"): DPO_OR_ADMIN,
    ("DELETE", "/api/consent/rules/{country}/versions/{rule_id}"): DPO_OR_ADMIN,
    # consent rosters (stewards import within their scope; the DPO reads and rectifies everywhere)
    ("POST", "/api/consent/rosters/students"): frozenset({Role.data_steward}),
    ("POST", "/api/consent/rosters/students/validate"): frozenset({Role.data_steward}),
    ("POST", "/api/consent/rosters/guardians"): frozenset({Role.data_steward}),
    ("POST", "/api/consent/rosters/guardians/validate"): frozenset({Role.data_steward}),
    ("POST", "/api/consent/rosters/teachers"): frozenset({Role.data_steward}),
    ("POST", "/api/consent/rosters/teachers/validate"): frozenset({Role.data_steward}),
    ("GET", "/api/consent/rosters/students"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/rosters/students/{subject_id}"): frozenset({Role.data_steward, Role.dpo}),
    ("PATCH", "/api/consent/rosters/students/{subject_id}"): frozenset({Role.data_steward, Role.dpo}),
    ("PATCH", "/api/consent/rosters/guardians/{guardian_id}"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/rosters/teachers"): frozenset({Role.data_steward, Role.dpo}),
    ("PATCH", "/api/consent/rosters/teachers/{subject_id}"): frozenset({Role.data_steward, Role.dpo}),
    # consent data-subject requests (stewards record and start them within their scope; the DPO carries out)
    ("POST", "/api/consent/requests"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/requests"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/requests/{request_id}"): frozenset({Role.data_steward, Role.dpo}),
    ("POST", "/api/consent/requests/{request_id}/start"): frozenset({Role.data_steward, Role.dpo}),
    ("POST", "/api/consent/requests/{request_id}/extend"): DPO,
    ("POST", "/api/consent/requests/{request_id}/refuse"): DPO,
    ("POST", "/api/consent/requests/{request_id}/complete"): DPO,
    ("GET", "/api/consent/requests/{request_id}/export"): DPO,
    # consent decisions and statuses (stewards enter paper decisions and read within their scope)
    ("POST", "/api/consent/decisions"): frozenset({Role.data_steward}),
    ("GET", "/api/consent/subjects/{subject_id}/decisions"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/subjects/{subject_id}/status"): frozenset({Role.data_steward, Role.dpo}),
    ("POST", "/api/consent/status"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/reconsent"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/rule-impacts/{rule_id}"): DPO,
    ("GET", "/api/consent/withdrawals"): DPO,
    # the catalog (metadata and schemas for every signed-in role; counts only for stewards and the DPO)
    ("POST", "/api/datasets"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/datasets"): SIGNED_IN,
    ("GET", "/api/datasets/{dataset_id}"): SIGNED_IN,
    ("POST", "/api/datasets/{dataset_id}/versions"): frozenset({Role.data_steward}),
    ("POST", "/api/datasets/{dataset_id}/uploads"): frozenset({Role.data_steward}),
    ("GET", "/api/datasets/{dataset_id}/ingestions/{job_id}"): frozenset({Role.data_steward}),
    ("GET", "/api/datasets/{dataset_id}/versions/{version}/quarantine"): frozenset({Role.data_steward}),
    # DP queries (researchers release within their projects; members and the DPO read releases and budgets)
    ("POST", "/api/dp/preview"): RESEARCHER,
    ("POST", "/api/dp/queries"): RESEARCHER,
    ("GET", "/api/dp/jobs/{job_id}"): RESEARCHER,
    ("GET", "/api/dp/releases"): frozenset({Role.researcher, Role.dpo}),
    ("GET", "/api/dp/releases/{release_id}"): frozenset({Role.researcher, Role.dpo}),
    ("GET", "/api/dp/releases/{release_id}/csv"): frozenset({Role.researcher, Role.dpo}),
    ("GET", "/api/dp/projects/{project_id}/budget"): frozenset({Role.researcher, Role.dpo}),
    ("PUT", "/api/dp/projects/{project_id}/caps/{account_id}"): frozenset({Role.researcher, Role.dpo}),
    ("GET", "/api/dp/budgets"): DPO,
    # consent forms and purposes (published documents: every signed-in staff member reads; the DPO publishes)
    ("GET", "/api/consent/forms"): SIGNED_IN,
    ("POST", "/api/consent/forms"): DPO,
    ("GET", "/api/consent/forms/purposes"): SIGNED_IN,
    ("GET", "/api/consent/forms/current"): SIGNED_IN,
    ("GET", "/api/consent/forms/{form_id}"): SIGNED_IN,
    # steward console and campaigns (stewards send within their scope; the DPO reads campaigns)
    ("POST", "/api/consent/campaigns"): frozenset({Role.data_steward}),
    ("GET", "/api/consent/campaigns"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/campaigns/{campaign_id}"): frozenset({Role.data_steward, Role.dpo}),
    ("GET", "/api/consent/campaigns/{campaign_id}/letters.pdf"): frozenset({Role.data_steward}),
    ("GET", "/staff/steward"): frozenset({Role.data_steward}),
    ("GET", "/staff/steward/rosters"): frozenset({Role.data_steward}),
    ("POST", "/staff/steward/rosters"): frozenset({Role.data_steward}),
    ("GET", "/staff/steward/campaigns"): frozenset({Role.data_steward}),
    ("POST", "/staff/steward/campaigns"): frozenset({Role.data_steward}),
    ("GET", "/staff/steward/campaigns/{campaign_id}"): frozenset({Role.data_steward}),
    ("GET", "/staff/steward/campaigns/{campaign_id}/letters.pdf"): frozenset({Role.data_steward}),
    ("GET", "/staff/steward/dashboard"): frozenset({Role.data_steward}),
    # researcher portal and privacy budgets (staff pages)
    ("GET", "/staff/research/static/portal.js"): PUBLIC,
    ("GET", "/staff/research/static/portal.css"): PUBLIC,
    ("GET", "/staff/research"): RESEARCHER,
    ("GET", "/staff/research/query"): RESEARCHER,
    ("POST", "/staff/research/query"): RESEARCHER,
    ("POST", "/staff/research/preview"): RESEARCHER,
    ("GET", "/staff/research/releases/{release_id}"): RESEARCHER,
    ("GET", "/staff/research/releases/{release_id}/result.csv"): RESEARCHER,
    ("GET", "/staff/research/jobs/{job_id}"): RESEARCHER,
    ("GET", "/staff/budgets"): DPO,
    # DPO pages (an administrator may give a second approval; stewards may follow the request queue)
    ("GET", "/staff/dpo"): DPO_OR_ADMIN,
    ("GET", "/staff/dpo/projects"): DPO_OR_ADMIN,
    ("GET", "/staff/dpo/projects/{project_id}"): DPO_OR_ADMIN,
    ("POST", "/staff/dpo/projects/{project_id}/approve"): DPO_OR_ADMIN,
    ("POST", "/staff/dpo/projects/{project_id}/decision"): DPO,
    ("GET", "/staff/dpo/requests"): frozenset({Role.dpo, Role.data_steward}),
    ("GET", "/staff/dpo/requests/{request_id}"): frozenset({Role.dpo, Role.data_steward}),
    ("POST", "/staff/dpo/requests/{request_id}/complete"): DPO,
    ("POST", "/staff/dpo/requests/{request_id}/extend"): DPO,
    # family pages (family session cookie, not staff roles)
    ("GET", "/f/{token}"): PUBLIC,
    ("GET", "/code"): PUBLIC,
    ("POST", "/code"): PUBLIC,
    ("GET", "/family"): PUBLIC,
    ("GET", "/family/static/family.css"): PUBLIC,
    ("GET", "/family/decide/{subject_id}"): PUBLIC,
    ("POST", "/family/decide/{subject_id}"): PUBLIC,
    ("POST", "/family/decide/{subject_id}/confirm"): PUBLIC,
    ("GET", "/family/receipt/{event_id}.json"): PUBLIC,
    ("GET", "/family/receipt/{event_id}"): PUBLIC,
    ("GET", "/family/agreed"): PUBLIC,
    ("GET", "/family/withdraw/{subject_id}"): PUBLIC,
    ("POST", "/family/withdraw/{subject_id}"): PUBLIC,
    ("GET", "/family/request/{subject_id}"): PUBLIC,
    ("POST", "/family/request/{subject_id}"): PUBLIC,
}

STAFF = (Role.admin, Role.dpo, Role.legal_reviewer, Role.data_steward, Role.researcher)
SESSION_ENDING = {("POST", "/api/auth/logout")}
"""Requests that end the caller's sign-in: the role signs in again afterwards."""


def _calls(dependant: Any) -> list[Callable[..., Any]]:
    found = []
    for sub in dependant.dependencies:
        if sub.call is not None:
            found.append(sub.call)
        found.extend(_calls(sub))
    return found


def _rule(dependant: Any) -> Rule:
    calls = _calls(dependant)
    role_sets = [frozenset(c.allowed_roles) for c in calls if getattr(c, "allowed_roles", None)]
    if role_sets:
        return frozenset.intersection(*role_sets)
    if get_principal in calls:
        return SIGNED_IN
    if get_enrolling_principal in calls:
        return ENROLLING
    return PUBLIC


def _app_rules(app: Any) -> dict[tuple[str, str], Rule]:
    rules: dict[tuple[str, str], Rule] = {}
    for route in iter_route_contexts(app.routes):
        methods = route.methods or set()
        dependant = getattr(route, "dependant", None)
        for method in sorted(methods - {"HEAD"}):
            rules[(method, route.path)] = _rule(dependant) if dependant is not None else PUBLIC
    return rules


def test_every_route_has_the_expected_access_rule(client):
    actual = _app_rules(client.app)
    missing = sorted(key for key in actual if key not in EXPECTED)
    assert not missing, f"routes without an entry in EXPECTED (decide who may call them): {missing}"
    stale = sorted(key for key in EXPECTED if key not in actual)
    assert not stale, f"EXPECTED lists routes the app no longer has: {stale}"
    wrong = {key: (actual[key], EXPECTED[key]) for key in actual if actual[key] != EXPECTED[key]}
    assert not wrong, f"routes whose rule differs from the table (actual, expected): {wrong}"


def _allowed(rule: Rule, role: Role | None) -> bool:
    if rule == PUBLIC:
        return True
    if role is None:
        return False
    if rule in (SIGNED_IN, ENROLLING):
        return True
    assert isinstance(rule, frozenset)
    return role in rule


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)


def test_every_route_answers_each_role_as_its_rule_says(client, staff_factory):
    users: dict[Role, StaffUser] = {role: staff_factory(roles=[role]) for role in STAFF}
    tokens = {role: sign_in(client, user)["access_token"] for role, user in users.items()}
    problems = []
    for (method, path), rule in sorted(EXPECTED.items(), key=lambda item: item[0][1]):
        if rule == PUBLIC:
            continue
        page = path.startswith("/staff/")
        if page and method != "GET":
            continue  # page forms also need a CSRF token; their rule is still checked above
        for role in (None, *STAFF):
            kwargs: dict[str, Any] = {}
            if role is not None:
                if page:
                    client.cookies.set("staff_session", tokens[role], path="/staff")
                else:
                    kwargs["headers"] = {"Authorization": f"Bearer {tokens[role]}"}
            if method in ("POST", "PATCH", "PUT"):
                kwargs["json"] = {}
            answer = client.request(method, _url(path), follow_redirects=False, **kwargs)
            client.cookies.clear()
            status = answer.status_code
            who = role.value if role else "anonymous"
            if role is None:
                refused = status in (302, 303, 307, 401) if page else status == 401
                if not refused:
                    problems.append(f"{method} {path} as anonymous: {status}, expected 401")
            elif not _allowed(rule, role):
                if status != 403:
                    problems.append(f"{method} {path} as {who}: {status}, expected 403")
            elif status in (401, 403) or status >= 500:
                problems.append(f"{method} {path} as {who}: {status}, expected to be let through")
            if role is not None and (method, path) in SESSION_ENDING:
                tokens[role] = sign_in(client, users[role])["access_token"]
    assert not problems, "\n".join(problems)


def test_token_for_mfa_enrolment_only_opens_the_enrolment_endpoints(client, staff_factory, db_session):
    from access.accounts.models import Account

    person = staff_factory(roles=[Role.researcher])
    account = db_session.get(Account, person.account_id)
    account.roles = ["dpo"]  # a role that needs MFA, which this account has not enrolled
    db_session.flush()
    body = sign_in(client, person)
    assert body["scope"] == "mfa_enrolment"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    problems = []
    for (method, path), rule in EXPECTED.items():
        if rule == PUBLIC or path.startswith("/staff/") or (method, path) in SESSION_ENDING:
            continue
        status = client.request(method, _url(path), headers=headers, json={}).status_code
        if rule == ENROLLING:
            if status in (401, 403):
                problems.append(f"{method} {path}: {status}, expected to be let through")
        elif status != 403:
            problems.append(f"{method} {path}: {status}, expected 403")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ["/api/auth/me", "/api/admin/accounts"])
def test_anonymous_refusal_names_the_bearer_scheme_in_a_problem_document(client, path):
    answer = client.get(path)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
