"""TOTP second factor: enrolment, sign-in with a code, replay refusal and one-time recovery codes."""

from __future__ import annotations

import base64
import time

import pyotp
import pytest
from sqlalchemy import select

from access.accounts import mfa
from access.accounts.models import Account
from access.audit.actions import Role
from access.audit.models import AuditEntry
from infra.keys import UnwrapFailed, WrappedKey
from tests.support.auth import auth_headers

PASSWORD = "violet-harbour-seventy-2"


def _login(client, email: str, password: str = PASSWORD, **extra):
    return client.post("/api/auth/token", data={"username": email, "password": password, **extra})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _wrong_code(secret: str) -> str:
    valid = {pyotp.TOTP(secret).at(time.time() + d) for d in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


@pytest.fixture
def new_dpo(client, staff_factory):
    """A DPO account created by an administrator, not yet enrolled in MFA."""
    admin = staff_factory(roles=[Role.admin])
    body = {"email": "dpo@example.org", "display_name": "D P O", "roles": ["dpo"], "password": PASSWORD}
    created = client.post("/api/admin/accounts", json=body, headers=auth_headers(client, admin))
    assert created.status_code == 201, created.text
    return created.json()


def _enrol(client, email: str) -> tuple[str, list[str]]:
    restricted = _login(client, email).json()["access_token"]
    started = client.post("/api/auth/mfa/enrol", headers=_bearer(restricted)).json()
    secret = started["secret"]
    confirmed = client.post(
        "/api/auth/mfa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=_bearer(restricted)
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret, confirmed.json()["recovery_codes"]


def test_staff_in_an_mfa_role_without_enrolment_gets_only_an_enrolment_token(client, new_dpo):
    answer = _login(client, "dpo@example.org")
    assert answer.status_code == 200
    body = answer.json()
    assert body["scope"] == "mfa_enrolment"
    assert "refresh_token" not in body
    restricted = _bearer(body["access_token"])
    refused = client.get("/api/auth/me", headers=restricted)
    assert refused.status_code == 403
    assert refused.json()["type"] == "/problems/mfa-enrolment-required"
    assert client.get("/api/admin/accounts", headers=restricted).status_code == 403


def test_enrolment_returns_secret_uri_and_svg_qr_code_then_confirmation_turns_mfa_on(client, new_dpo):
    restricted = _bearer(_login(client, "dpo@example.org").json()["access_token"])
    started = client.post("/api/auth/mfa/enrol", headers=restricted)
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    assert "dpo%40example.org" not in body["otpauth_uri"]
    assert "dpo@example.org" not in body["otpauth_uri"]
    assert body["qr_svg"].lstrip().startswith("<svg")

    wrong = client.post(
        "/api/auth/mfa/confirm", json={"code": _wrong_code(body["secret"])}, headers=restricted
    )
    assert wrong.status_code == 401
    right = client.post(
        "/api/auth/mfa/confirm", json={"code": pyotp.TOTP(body["secret"]).now()}, headers=restricted
    )
    assert right.status_code == 200
    codes = right.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10

    again = client.post("/api/auth/mfa/enrol", headers=restricted)
    assert again.status_code == 409


def test_enrolled_staff_sign_in_with_password_and_totp(client, new_dpo):
    secret, _ = _enrol(client, "dpo@example.org")
    missing = _login(client, "dpo@example.org")
    assert missing.status_code == 401
    assert missing.json()["type"] == "/problems/mfa-required"
    wrong = _login(client, "dpo@example.org", totp=_wrong_code(secret))
    assert wrong.status_code == 401
    assert wrong.json()["type"] == "/problems/invalid-credentials"
    # The confirmation used the current step's code; the next step's code is still accepted.
    ok = _login(client, "dpo@example.org", totp=pyotp.TOTP(secret).at(time.time() + 30))
    assert ok.status_code == 200, ok.text
    assert "scope" not in ok.json()
    me = client.get("/api/auth/me", headers=_bearer(ok.json()["access_token"])).json()
    assert me["roles"] == ["dpo"]
    assert me["mfa_enrolled"] is True


def test_a_totp_code_cannot_be_replayed(client, staff_factory):
    dpo = staff_factory(roles=[Role.dpo])
    code = pyotp.TOTP(dpo.totp_secret).now()
    assert _login(client, dpo.email, dpo.password, totp=code).status_code == 200
    replay = _login(client, dpo.email, dpo.password, totp=code)
    assert replay.status_code == 401
    earlier = pyotp.TOTP(dpo.totp_secret).at(time.time() - 30)
    assert _login(client, dpo.email, dpo.password, totp=earlier).status_code == 401


def test_recovery_code_works_exactly_once(client, new_dpo, db_session):
    _, codes = _enrol(client, "dpo@example.org")
    first = _login(client, "dpo@example.org", totp=codes[0])
    assert first.status_code == 200, first.text
    assert _login(client, "dpo@example.org", totp=codes[0]).status_code == 401
    assert _login(client, "dpo@example.org", totp=codes[1].upper().replace("-", "")).status_code == 200
    used = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "mfa.recovery_code_used")).all()
    assert [e.details["recovery_codes"] for e in used] == [9, 8]


def test_swagger_authorize_dialog_can_carry_the_code_in_client_secret(client, staff_factory):
    dpo = staff_factory(roles=[Role.dpo])
    in_body = _login(client, dpo.email, dpo.password, client_secret=pyotp.TOTP(dpo.totp_secret).now())
    assert in_body.status_code == 200
    # Swagger UI's default: client_id:client_secret as HTTP Basic credentials.
    code = pyotp.TOTP(dpo.totp_secret).at(time.time() + 30)
    basic = "Basic " + base64.b64encode(f":{code}".encode()).decode()
    form = {"grant_type": "password", "username": dpo.email, "password": dpo.password, "scope": ""}
    in_header = client.post("/api/auth/token", data=form, headers={"Authorization": basic})
    assert in_header.status_code == 200, in_header.text
    garbage = client.post("/api/auth/token", data=form, headers={"Authorization": "Basic %%%"})
    assert garbage.status_code == 401


def test_totp_secret_is_stored_wrapped_and_bound_to_its_account(db_session, components, staff_factory):
    dpo = staff_factory(roles=[Role.dpo])
    other = staff_factory(roles=[Role.legal_reviewer])
    row = db_session.get(Account, dpo.account_id)
    assert row.totp_secret is not None
    assert dpo.totp_secret not in row.totp_secret
    with pytest.raises(UnwrapFailed):
        components.keys.unwrap(
            mfa.TOTP_KEY, WrappedKey(row.totp_secret), f"account={other.account_id};purpose=totp".encode()
        )


def test_every_mfa_role_needs_the_second_factor(client, staff_factory):
    for role in (Role.admin, Role.dpo, Role.legal_reviewer, Role.data_steward):
        person = staff_factory(roles=[role])
        assert _login(client, person.email, person.password).status_code == 401
        assert client.get("/api/auth/me", headers=auth_headers(client, person)).status_code == 200


def test_mfa_enrolment_is_audited(client, new_dpo, db_session):
    _enrol(client, "dpo@example.org")
    actions = {
        e.action for e in db_session.scalars(select(AuditEntry).where(AuditEntry.target_id == new_dpo["id"]))
    }
    assert {"account.created", "mfa.enrolment_started", "mfa.enrolled", "auth.signed_in"} <= actions


def test_admin_reset_of_a_lost_second_factor_ends_sign_ins_and_requires_a_new_enrolment(
    client, staff_factory
):
    admin = staff_factory(roles=[Role.admin])
    dpo = staff_factory(roles=[Role.dpo])
    dpo_headers = auth_headers(client, dpo)
    reset = client.post(
        f"/api/admin/accounts/{dpo.account_id}/reset-mfa", headers=auth_headers(client, admin)
    )
    assert reset.status_code == 200
    assert reset.json()["mfa_enrolled"] is False
    assert client.get("/api/auth/me", headers=dpo_headers).status_code == 401
    again = _login(client, dpo.email, dpo.password, totp=pyotp.TOTP(dpo.totp_secret).now())
    assert again.status_code == 200
    assert again.json()["scope"] == "mfa_enrolment"
