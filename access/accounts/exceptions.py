"""Errors of accounts, sign-in, tokens and MFA (mapped to problem documents by the app)."""

from __future__ import annotations

from infra.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, ValidationFailed


class WeakPassword(ValidationFailed):
    """The new password breaks the password policy (the detail says which rule)."""

    type_slug = "weak-password"
    title = "Password refused"


class InvalidCredentials(Unauthorized):
    """Wrong user name, password or code; deliberately the same for every one of them."""

    type_slug = "invalid-credentials"
    title = "Sign-in failed"


class SecondFactorRequired(Unauthorized):
    """The password was right but the account needs a TOTP or recovery code as well."""

    type_slug = "mfa-required"
    title = "Second factor required"


class InvalidToken(Unauthorized):
    """The access or refresh token is missing, malformed, expired, revoked or not ours."""

    type_slug = "invalid-token"
    title = "Invalid token"


class MfaEnrolmentRequired(Forbidden):
    """The token only allows enrolling a second factor, which this account's roles require."""

    type_slug = "mfa-enrolment-required"
    title = "Second factor enrolment required"


class SignInThrottled(TooManyRequests):
    """Too many failed sign-ins for this user name or address; try again after ``retry_after`` s."""

    type_slug = "sign-in-throttled"
    title = "Too many failed sign-ins"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed sign-in attempts; try again in {retry_after} seconds",
            extra={"retry_after": retry_after},
        )


class AccountNotFound(NotFound):
    """No account with that id (deleted accounts are not found either)."""

    type_slug = "account-not-found"
    title = "Account not found"


class AccountConflict(Conflict):
    """The change conflicts with existing accounts (email in use, last admin, own account)."""

    type_slug = "account-conflict"
    title = "Account conflict"


class InvalidAccountInput(ValidationFailed):
    """Roles and scope do not fit together (e.g. a data steward without a country)."""

    type_slug = "invalid-account"
    title = "Invalid account"


class MfaStateError(Conflict):
    """The MFA step does not fit the account's state (e.g. confirming without starting)."""

    type_slug = "mfa-state"
    title = "MFA enrolment state"
