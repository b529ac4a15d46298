"""The points where staff pages meet the accounts service: signing in, reading a token, signing out.

Pages keep no credentials of their own: a sign-in yields the same access token the API issues,
and a page request is authorised by the same checks a bearer token gets (signature, expiry,
account still active, sign-in not ended, roles still held).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session

from access.accounts import signin
from access.accounts.exceptions import MfaEnrolmentRequired
from access.dependencies import auth_environment
from access.principal import Principal


@dataclass(frozen=True)
class StaffSignIn:
    """An access token from a completed sign-in and its lifetime in seconds."""

    token: str
    expires_in: int


def sign_in(
    request: Request, session: Session, *, email: str, password: str, totp: str, client_address: str
) -> StaffSignIn:
    """Check email, password and code with the accounts service; its errors pass through."""
    result = signin.sign_in(
        session,
        auth_environment(request),
        username=email,
        password=password,
        code=totp or None,
        address=client_address,
    )
    if result.restricted:
        # A token that only allows enrolling a second factor opens no page: enrolment is done first.
        raise MfaEnrolmentRequired("enrol a second factor before signing in to the staff pages")
    return StaffSignIn(token=result.access.token, expires_in=result.access.expires_in)


def principal_for_token(request: Request, session: Session, token: str) -> Principal:
    """The principal of a valid access token; an Unauthorized or Forbidden error otherwise."""
    return signin.authenticate(session, auth_environment(request), token)


def sign_out(session: Session, principal: Principal) -> None:
    """End the sign-in: its refresh and access tokens stop working, the page cookie included."""
    signin.sign_out(session, principal)
