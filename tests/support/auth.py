"""Staff accounts and sign-in for tests: create accounts through the service, sign in over HTTP.

``create_staff`` enrols MFA for roles that need it and keeps the TOTP secret, so ``auth_headers``
can sign in with a fresh code exactly as a person would.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from access.accounts import mfa, service
from access.accounts.models import Account
from access.accounts.schemas import AccountCreate
from access.audit.actions import Role
from access.audit.service import Actor
from access.principal import MFA_ROLES
from enclave.components import Components


@dataclass
class StaffUser:
    """A staff account created for a test, with the credentials needed to sign in."""

    account_id: str
    email: str
    password: str
    totp_secret: str | None
    roles: list[Role]


def create_staff(
    session: Session,
    components: Components,
    *,
    roles: list[Role],
    country: str | None = None,
    schools: list[str] | None = None,
    email: str | None = None,
) -> StaffUser:
    """Create an active account through the accounts service (MFA enrolled for MFA roles); flushes.

    A data steward without an explicit ``country`` serves ``ES``; the email is unique by default.
    """
    if Role.data_steward in roles and country is None:
        country = "ES"
    password = f"Test-{secrets.token_urlsafe(16)}"
    data = AccountCreate(
        email=email or f"staff-{secrets.token_hex(6)}@example.org",
        display_name="Test staff member",
        roles=roles,
        country=country,
        schools=schools or [],
        password=password,
    )
    account = service.create_account(session, Actor.system(), data)
    secret = None
    if set(roles) & MFA_ROLES:
        secret, _ = mfa.enrol_now(session, components.keys, account)
    session.flush()
    return StaffUser(account.id, account.email, password, secret, list(roles))


def _forget_last_code(client: TestClient, user: StaffUser) -> None:
    # A test may sign the same person in several times within one 30-second step; the server
    # rightly refuses a replayed code, so forget the last accepted step first.
    components = client.app.state.components  # type: ignore[attr-defined]
    with components.session_factory() as session:
        session.execute(update(Account).where(Account.id == user.account_id).values(totp_last_step=None))
        session.commit()


def sign_in(client: TestClient, user: StaffUser) -> dict[str, Any]:
    """Sign in through ``POST /api/auth/token``; returns the token response (asserts success)."""
    form = {"username": user.email, "password": user.password}
    if user.totp_secret is not None:
        _forget_last_code(client, user)
        form["totp"] = pyotp.TOTP(user.totp_secret).now()
    response = client.post("/api/auth/token", data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def auth_headers(client: TestClient, user: StaffUser) -> dict[str, str]:
    """Sign in and return ``{"Authorization": "Bearer ..."}`` for the user."""
    return {"Authorization": f"Bearer {sign_in(client, user)['access_token']}"}


@pytest.fixture
def staff_factory(db_session: Session, components: Components) -> Callable[..., StaffUser]:
    """``staff_factory(roles=[Role.dpo], country=None, schools=None, email=None)`` → StaffUser."""

    def make(
        *,
        roles: list[Role],
        country: str | None = None,
        schools: list[str] | None = None,
        email: str | None = None,
    ) -> StaffUser:
        return create_staff(
            db_session, components, roles=roles, country=country, schools=schools, email=email
        )

    return make
