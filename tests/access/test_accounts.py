"""Account administration, the password policy, sign-in throttling and the audit trail of accounts."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from access.accounts.exceptions import WeakPassword
from access.accounts.models import Account, LoginAttempt
from access.accounts.passwords import check_policy, hash_password, verify_password
from access.audit.actions import Role
from access.audit.models import AuditEntry
from tests.support.auth import auth_headers, sign_in

STRONG = "violet-harbour-seventy-2"


@pytest.fixture
def admin(staff_factory):
    return staff_factory(roles=[Role.admin])


@pytest.fixture
def admin_headers(client, admin):
    return auth_headers(client, admin)


def _new_account(**changes):
    body = {
        "email": "New.Person@Example.org",
        "display_name": "New Person",
        "roles": ["researcher"],
        "password": STRONG,
    }
    body.update(changes)
    return body


def _entries(db_session, action: str) -> list[AuditEntry]:
    return list(db_session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_admin_creates_lists_updates_suspends_reactivates_and_deletes_an_account(client, admin_headers):
    created = client.post("/api/admin/accounts", json=_new_account(), headers=admin_headers)
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["email"] == "new.person@example.org"
    assert account["status"] == "active"
    assert "password" not in json.dumps(account)
    account_id = account["id"]

    listed = client.get("/api/admin/accounts", headers=admin_headers).json()
    assert account_id in {a["id"] for a in listed}

    changed = client.patch(
        f"/api/admin/accounts/{account_id}",
        json={"roles": ["data_steward"], "country": "pl", "schools": ["PL-001"]},
        headers=admin_headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["roles"] == ["data_steward"]
    assert changed.json()["country"] == "PL"

    suspended = client.post(f"/api/admin/accounts/{account_id}/suspend", headers=admin_headers)
    assert suspended.json()["status"] == "suspended"
    reactivated = client.post(f"/api/admin/accounts/{account_id}/reactivate", headers=admin_headers)
    assert reactivated.json()["status"] == "active"

    assert client.delete(f"/api/admin/accounts/{account_id}", headers=admin_headers).status_code == 204
    assert client.get(f"/api/admin/accounts/{account_id}", headers=admin_headers).status_code == 404
    assert account_id not in {
        a["id"] for a in client.get("/api/admin/accounts", headers=admin_headers).json()
    }


def test_deleting_an_account_erases_its_email_and_name(client, admin_headers, db_session):
    account_id = client.post("/api/admin/accounts", json=_new_account(), headers=admin_headers).json()["id"]
    client.delete(f"/api/admin/accounts/{account_id}", headers=admin_headers)
    row = db_session.get(Account, account_id)
    db_session.refresh(row)
    assert row.status == "deleted"
    assert "new.person" not in row.email
    assert row.display_name != "New Person"


def test_every_account_write_leaves_a_ledger_entry_without_the_email(
    client, admin, admin_headers, db_session
):
    account_id = client.post("/api/admin/accounts", json=_new_account(), headers=admin_headers).json()["id"]
    client.patch(f"/api/admin/accounts/{account_id}", json={"display_name": "Renamed"}, headers=admin_headers)
    client.post(f"/api/admin/accounts/{account_id}/suspend", headers=admin_headers)
    client.post(f"/api/admin/accounts/{account_id}/reactivate", headers=admin_headers)
    client.delete(f"/api/admin/accounts/{account_id}", headers=admin_headers)
    for action in (
        "account.created",
        "account.updated",
        "account.suspended",
        "account.reactivated",
        "account.deleted",
    ):
        entries = [e for e in _entries(db_session, action) if e.target_id == account_id]
        assert len(entries) == 1, action
        entry = entries[0]
        assert entry.actor_id == admin.account_id
        assert entry.actor_role == "admin"
        text = json.dumps([entry.actor_id, entry.target_id, entry.details])
        assert "@" not in text
        assert "new.person" not in text.lower()
        assert "Renamed" not in text


def test_account_writes_are_refused_to_non_admins(client, staff_factory):
    dpo = staff_factory(roles=[Role.dpo])
    headers = auth_headers(client, dpo)
    assert client.post("/api/admin/accounts", json=_new_account(), headers=headers).status_code == 403
    assert client.get("/api/admin/accounts").status_code == 401


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pw", "at least 12"),
        ("password1234", "common"),
        ("Password2024!", "common"),
        ("qwertyqwerty", "common"),
        ("123456789012", "common"),
        ("aaaaaaaaaaaaaaaa", "common"),
        ("Sunshine!!!!!!", "common"),
    ],
)
def test_weak_or_common_password_is_refused_with_a_clear_422_reason(client, admin_headers, password, reason):
    answer = client.post("/api/admin/accounts", json=_new_account(password=password), headers=admin_headers)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert reason in answer.json()["detail"]


def test_password_policy_accepts_a_long_uncommon_password():
    check_policy(STRONG)
    with pytest.raises(WeakPassword):
        check_policy("letmein12345")


def test_passwords_are_stored_as_argon2id_hashes():
    stored = hash_password(STRONG)
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, STRONG)
    assert not verify_password(stored, STRONG + "x")
    assert not verify_password("not-a-hash", STRONG)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email"},
        {"roles": []},
        {"roles": ["guardian"]},
        {"roles": ["nonsense"]},
        {"roles": ["data_steward"]},
        {"roles": ["researcher"], "country": "ES"},
        {"country": "Spain", "roles": ["data_steward"]},
        {"schools": ["has space"], "roles": ["data_steward"], "country": "ES"},
        {"unexpected": 1},
    ],
)
def test_bad_account_input_is_a_4xx_problem_never_a_500(client, admin_headers, body):
    answer = client.post("/api/admin/accounts", json=_new_account(**body), headers=admin_headers)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_bad_input_on_other_account_endpoints_is_4xx(client, admin_headers):
    assert client.post("/api/admin/accounts", content=b"{not json", headers=admin_headers).status_code == 422
    assert client.get("/api/admin/accounts/unknown", headers=admin_headers).status_code == 404
    assert client.patch("/api/admin/accounts/unknown", json={}, headers=admin_headers).status_code == 404
    assert client.post("/api/auth/token", data={}).status_code == 422
    assert (
        client.post("/api/auth/token", data={"username": "a", "password": "b", "grant_type": "x"}).status_code
        == 422
    )
    assert client.post("/api/auth/refresh", content=b"[]").status_code == 422


def test_duplicate_email_is_a_conflict(client, admin_headers):
    assert client.post("/api/admin/accounts", json=_new_account(), headers=admin_headers).status_code == 201
    assert client.post("/api/admin/accounts", json=_new_account(), headers=admin_headers).status_code == 409


def test_admin_cannot_suspend_or_delete_themselves_nor_remove_the_last_admin(client, admin, admin_headers):
    me = admin.account_id
    assert client.post(f"/api/admin/accounts/{me}/suspend", headers=admin_headers).status_code == 409
    assert client.delete(f"/api/admin/accounts/{me}", headers=admin_headers).status_code == 409
    assert (
        client.patch(f"/api/admin/accounts/{me}", json={"roles": ["dpo"]}, headers=admin_headers).status_code
        == 409
    )


def test_role_removed_by_an_admin_applies_to_tokens_already_issued(client, staff_factory, admin_headers):
    person = staff_factory(roles=[Role.researcher])
    token = auth_headers(client, person)
    assert client.get("/api/auth/me", headers=token).json()["roles"] == ["researcher"]
    client.patch(
        f"/api/admin/accounts/{person.account_id}",
        json={"roles": ["data_steward"], "country": "ES"},
        headers=admin_headers,
    )
    assert client.get("/api/auth/me", headers=token).json()["roles"] == []


# --- sign-in ---------------------------------------------------------------------------------------


def _login(client, username: str, password: str, **extra):
    return client.post("/api/auth/token", data={"username": username, "password": password, **extra})


def test_researcher_signs_in_with_the_oauth2_password_form(client, staff_factory):
    person = staff_factory(roles=[Role.researcher])
    answer = _login(client, person.email.upper(), person.password, grant_type="password")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["refresh_token"]
    assert answer.headers["cache-control"] == "no-store"
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert me["account_id"] == person.account_id


def test_unknown_user_and_wrong_password_get_the_same_answer(client, staff_factory):
    person = staff_factory(roles=[Role.researcher])
    unknown = _login(client, "nobody@example.org", "whatever-password-1")
    wrong = _login(client, person.email, "whatever-password-1")
    assert unknown.status_code == wrong.status_code == 401
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert strip(unknown.json()) == strip(wrong.json())


def test_suspended_account_cannot_sign_in_and_gets_the_same_answer(client, staff_factory, admin_headers):
    person = staff_factory(roles=[Role.researcher])
    client.post(f"/api/admin/accounts/{person.account_id}/suspend", headers=admin_headers)
    answer = _login(client, person.email, person.password)
    assert answer.status_code == 401
    assert answer.json()["type"] == "/problems/invalid-credentials"


def test_failed_sign_ins_are_audited_without_the_email(client, staff_factory, db_session):
    person = staff_factory(roles=[Role.researcher])
    _login(client, person.email, "wrong-password-123")
    _login(client, "ghost@example.org", "wrong-password-123")
    denied = [e for e in _entries(db_session, "auth.signed_in") if e.outcome == "denied"]
    assert {e.actor_id for e in denied} >= {person.account_id, "unknown"}
    assert all("@" not in json.dumps([e.actor_id, e.target_id, e.details]) for e in denied)


def test_repeated_failures_for_one_account_slow_down_then_lock_it_with_429_and_retry_after(
    client, staff_factory, db_session, settings
):
    person = staff_factory(roles=[Role.researcher])
    for _ in range(settings.login_failures_before_delay):
        assert _login(client, person.email, "wrong-password-123").status_code == 401
    slowed = _login(client, person.email, person.password)
    assert slowed.status_code == 429
    assert 1 <= int(slowed.headers["retry-after"]) <= 2

    # Let the delays pass (move the attempts back in time) and keep failing up to the lockout.
    for _ in range(settings.login_max_failures_per_account - settings.login_failures_before_delay):
        db_session.execute(update(LoginAttempt).values(at=LoginAttempt.at - timedelta(seconds=30)))
        assert _login(client, person.email, "wrong-password-123").status_code == 401
    locked = _login(client, person.email, person.password)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > settings.login_lockout_seconds - 10
    assert locked.headers["content-type"].startswith("application/problem+json")

    db_session.execute(
        update(LoginAttempt).values(
            at=LoginAttempt.at - timedelta(seconds=settings.login_lockout_seconds + 1)
        )
    )
    assert _login(client, person.email, person.password).status_code == 200


def test_unknown_user_names_are_throttled_like_real_ones(client, settings):
    for _ in range(settings.login_failures_before_delay):
        assert _login(client, "ghost@example.org", "wrong-password-123").status_code == 401
    assert _login(client, "ghost@example.org", "wrong-password-123").status_code == 429


def test_many_failures_from_one_address_slow_it_down_then_lock_it_out(
    client, staff_factory, settings, db_session
):
    person = staff_factory(roles=[Role.researcher])
    half = settings.login_max_failures_per_address // 2
    for n in range(half):
        assert _login(client, f"guess-{n}@example.org", "wrong-password-123").status_code == 401
    slowed = _login(client, "guess-next@example.org", "wrong-password-123")
    assert slowed.status_code == 429
    assert 1 <= int(slowed.headers["retry-after"]) <= 2
    for n in range(half, settings.login_max_failures_per_address):
        # Let each delay pass (at most 30 s), staying inside the counting window.
        db_session.execute(update(LoginAttempt).values(at=LoginAttempt.at - timedelta(seconds=40)))
        assert _login(client, f"guess-{n}@example.org", "wrong-password-123").status_code == 401
    blocked = _login(client, person.email, person.password)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > settings.login_lockout_seconds - 10


def test_a_successful_sign_in_resets_the_per_account_delay(client, staff_factory, settings):
    person = staff_factory(roles=[Role.researcher])
    for _ in range(settings.login_failures_before_delay - 1):
        _login(client, person.email, "wrong-password-123")
    assert _login(client, person.email, person.password).status_code == 200
    for _ in range(settings.login_failures_before_delay - 1):
        assert _login(client, person.email, "wrong-password-123").status_code == 401
    assert _login(client, person.email, person.password).status_code == 200


def test_sign_in_with_the_correct_password_is_audited(client, staff_factory, db_session):
    person = staff_factory(roles=[Role.researcher])
    sign_in(client, person)
    ok = [
        e
        for e in _entries(db_session, "auth.signed_in")
        if e.outcome == "ok" and e.target_id == person.account_id
    ]
    assert ok
    assert ok[0].details == {"method": "single_factor", "restricted": False}


def test_own_password_change_checks_the_current_password_and_the_policy(client, staff_factory):
    person = staff_factory(roles=[Role.researcher])
    headers = auth_headers(client, person)
    wrong = client.post(
        "/api/auth/password",
        json={"current_password": "nope-nope-nope", "new_password": STRONG},
        headers=headers,
    )
    assert wrong.status_code == 401
    weak = client.post(
        "/api/auth/password",
        json={"current_password": person.password, "new_password": "password1234"},
        headers=headers,
    )
    assert weak.status_code == 422
    ok = client.post(
        "/api/auth/password",
        json={"current_password": person.password, "new_password": STRONG},
        headers=headers,
    )
    assert ok.status_code == 204
    assert _login(client, person.email, STRONG).status_code == 200


def test_api_docs_offer_the_oauth2_password_flow_for_the_authorize_button(client):
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    flows = [s["flows"]["password"] for s in schemes.values() if s.get("type") == "oauth2"]
    assert flows == [{"scopes": {}, "tokenUrl": "/api/auth/token"}]
    me = schema["paths"]["/api/auth/me"]["get"]
    assert me["security"]


def test_unknown_user_costs_one_password_verification_against_a_dummy_hash(
    client, staff_factory, monkeypatch
):
    import access.accounts.signin as signin_module
    from access.accounts.passwords import dummy_hash

    person = staff_factory(roles=[Role.researcher])
    checked: list[str] = []
    real = signin_module.verify_password

    def spy(stored: str, password: str) -> bool:
        checked.append(stored)
        return real(stored, password)

    monkeypatch.setattr(signin_module, "verify_password", spy)
    _login(client, "nobody@example.org", "wrong-password-123")
    _login(client, person.email, "wrong-password-123")
    assert len(checked) == 2
    assert checked[0] == dummy_hash()
    assert checked[1].startswith("$argon2id$")
    assert checked[1] != dummy_hash()
