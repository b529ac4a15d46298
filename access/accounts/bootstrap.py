"""Creating an administrator from the command line (the first one cannot be made over the API)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from access.accounts import mfa, service
from access.accounts.schemas import AccountCreate
from access.audit.actions import Role
from access.audit.service import Actor
from infra.keys import KeyBackend


@dataclass(frozen=True)
class NewAdmin:
    """The created account id and its second factor, to be shown once to the operator."""

    account_id: str
    totp_secret: str
    otpauth_uri: str
    recovery_codes: list[str]


def create_admin(session: Session, keys: KeyBackend, *, email: str, name: str, password: str) -> NewAdmin:
    """Create an active administrator with TOTP already enrolled (audited as done by the system)."""
    data = AccountCreate(email=email, display_name=name, roles=[Role.admin], password=password)
    account = service.create_account(session, Actor.system(), data)
    secret, codes = mfa.enrol_now(session, keys, account)
    session.flush()
    return NewAdmin(account.id, secret, mfa.provisioning_uri(account.id, secret), codes)
