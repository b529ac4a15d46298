"""HTTP endpoints: sign-in and tokens (``/api/auth``) and account administration (``/api/admin``)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status

from access.accounts import mfa, service, signin
from access.accounts.actions import MFA_ENROLLED, MFA_ENROLMENT_STARTED, RecoveryCodeDetails
from access.accounts.exceptions import InvalidCredentials
from access.accounts.schemas import (
    AccountCreate,
    AccountOut,
    AccountUpdate,
    Me,
    MfaConfirm,
    MfaEnrolment,
    PasswordChange,
    RecoveryCodes,
    RefreshRequest,
    TokenResponse,
)
from access.accounts.signin import SignInResult
from access.audit.service import record
from access.dependencies import AdminDep, AuthEnvironmentDep, CurrentPrincipal, EnrollingPrincipal
from infra.web.deps import SessionDep

auth_router = APIRouter(prefix="/api/auth", tags=["sign-in"])
admin_router = APIRouter(prefix="/api/admin/accounts", tags=["accounts"])


def _basic_client_secret(request: Request) -> str | None:
    # Swagger UI's Authorize dialog sends client_id:client_secret as HTTP Basic credentials by
    # default ("Client credentials location: Authorization header").
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    secret = decoded.partition(":")[2].strip()
    return secret[:32] or None


def _token_response(result: SignInResult, response: Response) -> TokenResponse:
    response.headers["Cache-Control"] = "no-store"
    return TokenResponse(
        access_token=result.access.token,
        expires_in=result.access.expires_in,
        refresh_token=result.refresh_token,
        scope="mfa_enrolment" if result.restricted else None,
    )


@auth_router.post("/token", response_model=TokenResponse, response_model_exclude_none=True)
def token(
    *,
    request: Request,
    response: Response,
    session: SessionDep,
    environment: AuthEnvironmentDep,
    username: Annotated[str, Form(max_length=254, description="Your email address.")],
    password: Annotated[str, Form(max_length=1024)],
    totp: Annotated[
        str | None, Form(max_length=32, description="Authenticator code, or a recovery code (MFA roles).")
    ] = None,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    client_id: Annotated[str | None, Form(max_length=200)] = None,
    client_secret: Annotated[
        str | None,
        Form(
            max_length=32,
            description="Swagger's Authorize dialog has no code field: put the code in its client_secret.",
        ),
    ] = None,
) -> TokenResponse:
    """OAuth2 password flow: email + password (+ one-time code for MFA roles) → access and refresh token.

    A staff member whose roles need MFA but who has not enrolled it yet gets a short token with
    ``scope: mfa_enrolment`` that only allows ``/api/auth/mfa/enrol`` and ``/api/auth/mfa/confirm``;
    they sign in again with a code afterwards.
    """
    address = request.client.host if request.client else "unknown"
    result = signin.sign_in(
        session,
        environment,
        username=username,
        password=password,
        code=totp or client_secret or _basic_client_secret(request),
        address=address,
    )
    return _token_response(result, response)


@auth_router.post("/refresh", response_model=TokenResponse, response_model_exclude_none=True)
def refresh(
    body: RefreshRequest, response: Response, session: SessionDep, environment: AuthEnvironmentDep
) -> TokenResponse:
    """Exchange a refresh token (used once) for a new access token and a new refresh token."""
    return _token_response(signin.refresh(session, environment, body.refresh_token), response)


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(principal: CurrentPrincipal, session: SessionDep) -> None:
    """End this sign-in: its refresh token and access tokens stop working."""
    signin.sign_out(session, principal)


@auth_router.get("/me", response_model=Me)
def me(principal: CurrentPrincipal, session: SessionDep) -> Me:
    """The signed-in account and its effective roles."""
    account = service.get_account(session, principal.account_id)
    return Me(
        account_id=account.id,
        email=account.email,
        display_name=account.display_name,
        roles=sorted(role.value for role in principal.roles),
        country=principal.country,
        schools=sorted(principal.schools),
        mfa_enrolled=account.mfa_enrolled,
        mfa_required=service.needs_mfa(account),
    )


@auth_router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(body: PasswordChange, principal: CurrentPrincipal, session: SessionDep) -> None:
    """Change your own password (at least 12 characters, not a common one)."""
    service.change_password(session, principal, body.current_password, body.new_password)


@auth_router.post("/mfa/enrol", response_model=MfaEnrolment)
def mfa_enrol(
    principal: EnrollingPrincipal, session: SessionDep, environment: AuthEnvironmentDep, response: Response
) -> MfaEnrolment:
    """Start TOTP enrolment: a new secret, as text, as otpauth URI and as an SVG QR code."""
    account = service.get_account(session, principal.account_id)
    secret = mfa.start_enrolment(environment.keys, account)
    session.flush()
    record(session, principal.actor, MFA_ENROLMENT_STARTED, target_type="account", target_id=account.id)
    uri = mfa.provisioning_uri(account.id, secret)
    response.headers["Cache-Control"] = "no-store"
    return MfaEnrolment(secret=secret, otpauth_uri=uri, qr_svg=mfa.qr_svg(uri))


@auth_router.post("/mfa/confirm", response_model=RecoveryCodes)
def mfa_confirm(
    body: MfaConfirm,
    principal: EnrollingPrincipal,
    session: SessionDep,
    environment: AuthEnvironmentDep,
    response: Response,
) -> RecoveryCodes:
    """Confirm enrolment with the app's current code; returns recovery codes (shown only this once)."""
    account = service.get_account(session, principal.account_id)
    codes = mfa.confirm_enrolment(session, environment.keys, account, body.code)
    if not codes:
        raise InvalidCredentials("the code does not match: check the clock of the device and try again")
    record(
        session,
        principal.actor,
        MFA_ENROLLED,
        target_type="account",
        target_id=account.id,
        details=RecoveryCodeDetails(recovery_codes=len(codes)),
    )
    response.headers["Cache-Control"] = "no-store"
    return RecoveryCodes(recovery_codes=codes)


@admin_router.post("", response_model=AccountOut, status_code=status.HTTP_201_CREATED)
def create_account(body: AccountCreate, principal: AdminDep, session: SessionDep) -> AccountOut:
    """Create a staff account (admin only). Staff in MFA roles enrol a second factor at first sign-in."""
    return AccountOut.model_validate(service.create_account(session, principal.actor, body))


@admin_router.get("", response_model=list[AccountOut])
def list_accounts(principal: AdminDep, session: SessionDep) -> list[AccountOut]:
    """Every account that is not deleted (admin only)."""
    return [AccountOut.model_validate(a) for a in service.list_accounts(session)]


@admin_router.get("/{account_id}", response_model=AccountOut)
def get_account(account_id: str, principal: AdminDep, session: SessionDep) -> AccountOut:
    """One account (admin only)."""
    return AccountOut.model_validate(service.get_account(session, account_id))


@admin_router.patch("/{account_id}", response_model=AccountOut)
def update_account(
    account_id: str, body: AccountUpdate, principal: AdminDep, session: SessionDep
) -> AccountOut:
    """Change an account's name, roles or steward scope (admin only)."""
    return AccountOut.model_validate(service.update_account(session, principal, account_id, body))


@admin_router.post("/{account_id}/suspend", response_model=AccountOut)
def suspend_account(account_id: str, principal: AdminDep, session: SessionDep) -> AccountOut:
    """Suspend an account: it can neither sign in nor use tokens it holds (admin only)."""
    return AccountOut.model_validate(service.suspend_account(session, principal, account_id))


@admin_router.post("/{account_id}/reactivate", response_model=AccountOut)
def reactivate_account(account_id: str, principal: AdminDep, session: SessionDep) -> AccountOut:
    """Lift a suspension (admin only)."""
    return AccountOut.model_validate(service.reactivate_account(session, principal, account_id))


@admin_router.post("/{account_id}/reset-mfa", response_model=AccountOut)
def reset_mfa(account_id: str, principal: AdminDep, session: SessionDep) -> AccountOut:
    """Remove a lost second factor; the person enrols a new one at next sign-in (admin only)."""
    return AccountOut.model_validate(service.reset_mfa(session, principal, account_id))


@admin_router.delete("/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_account(account_id: str, principal: AdminDep, session: SessionDep) -> None:
    """Delete an account, erasing its email address and name; ledger references stay (admin only)."""
    service.delete_account(session, principal, account_id)


router = APIRouter()
router.include_router(auth_router)
router.include_router(admin_router)
