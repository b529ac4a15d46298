"""Request and response bodies of the accounts, sign-in and MFA endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from access.audit.actions import Role
from access.principal import STAFF_ROLES

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=254, pattern=EMAIL_PATTERN)
]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Country = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")]
SchoolId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


def _staff_roles(roles: list[Role]) -> list[Role]:
    unknown = [role.value for role in roles if role not in STAFF_ROLES]
    if unknown:
        raise ValueError(f"not staff roles: {', '.join(unknown)}")
    return sorted(set(roles), key=lambda role: role.value)


class AccountCreate(BaseModel):
    """A new staff account. The person sets up their second factor at first sign-in if a role needs it."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    display_name: DisplayName
    roles: list[Role] = Field(min_length=1)
    country: Country | None = Field(None, description="Required for data stewards: the country they serve.")
    schools: list[SchoolId] = Field(
        default_factory=list, description="Optional school scope of a data steward."
    )
    password: str = Field(description="Initial password: at least 12 characters and not a common one.")

    _roles = field_validator("roles")(_staff_roles)


class AccountUpdate(BaseModel):
    """Fields to change; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    display_name: DisplayName | None = None
    roles: list[Role] | None = Field(None, min_length=1)
    country: Country | None = None
    schools: list[SchoolId] | None = None

    @field_validator("roles")
    @classmethod
    def _check_roles(cls, roles: list[Role] | None) -> list[Role] | None:
        return None if roles is None else _staff_roles(roles)


class AccountOut(BaseModel):
    """A staff account as administrators see it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    display_name: str
    roles: list[str]
    country: str | None
    schools: list[str]
    status: str
    mfa_enrolled: bool
    created_at: datetime
    updated_at: datetime


class Me(BaseModel):
    """The signed-in account and what its token allows."""

    account_id: str
    email: str
    display_name: str
    roles: list[str]
    country: str | None
    schools: list[str]
    mfa_enrolled: bool
    mfa_required: bool


class TokenResponse(BaseModel):
    """OAuth2 token response; ``scope`` is ``mfa_enrolment`` for a token that only allows enrolling MFA."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str | None = None
    scope: str | None = None


class RefreshRequest(BaseModel):
    """A refresh token to exchange for a new access and refresh token."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


class PasswordChange(BaseModel):
    """The current password and the new one."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=1024)
    new_password: str


class MfaEnrolment(BaseModel):
    """A TOTP secret to add to an authenticator app (as text, as otpauth URI, and as a QR code)."""

    secret: str
    otpauth_uri: str
    qr_svg: str = Field(description="The otpauth URI as an SVG QR code.")


class MfaConfirm(BaseModel):
    """The current code of the authenticator app, proving the secret was stored."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$")


class RecoveryCodes(BaseModel):
    """One-time recovery codes: shown once, each usable once instead of a TOTP code."""

    recovery_codes: list[str]
