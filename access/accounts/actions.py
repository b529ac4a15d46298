"""Auditable actions of accounts, sign-in and MFA, with the shape of their details.

Details hold ids, roles, counts and enumerations only: never an email address or a name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import StringConstraints

from access.audit.actions import Details, Identifier, NoDetails, Role, register_action

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class AccountDetails(Details):
    """Roles and scope an account was given."""

    roles: list[Role]
    country: CountryCode | None = None
    schools: tuple[Identifier, ...] = ()


class AccountChangeDetails(Details):
    """Which fields an update changed, and the resulting roles and scope."""

    changed: list[Identifier]
    roles: list[Role]
    country: CountryCode | None = None
    schools: tuple[Identifier, ...] = ()


class SignInMethod(StrEnum):
    """The factor given with the password at sign-in."""

    single_factor = "single_factor"
    totp = "totp"
    recovery_code = "recovery_code"


class SignInDetails(Details):
    """How a sign-in succeeded and whether it gave only an MFA-enrolment token."""

    method: SignInMethod
    restricted: bool = False


class RecoveryCodeDetails(Details):
    """How many recovery codes were issued or remain."""

    recovery_codes: int


ACCOUNT_CREATED = register_action("account.created", AccountDetails)
ACCOUNT_UPDATED = register_action("account.updated", AccountChangeDetails)
ACCOUNT_SUSPENDED = register_action("account.suspended", NoDetails)
ACCOUNT_REACTIVATED = register_action("account.reactivated", NoDetails)
ACCOUNT_DELETED = register_action("account.deleted", NoDetails)
ACCOUNT_PASSWORD_CHANGED = register_action("account.password_changed", NoDetails)
ACCOUNT_MFA_RESET = register_action("account.mfa_reset", NoDetails)
AUTH_SIGNED_IN = register_action("auth.signed_in", SignInDetails)
AUTH_REFRESHED = register_action("auth.refreshed", NoDetails)
AUTH_REFRESH_REUSED = register_action("auth.refresh_reused", NoDetails)
AUTH_SIGNED_OUT = register_action("auth.signed_out", NoDetails)
MFA_ENROLMENT_STARTED = register_action("mfa.enrolment_started", NoDetails)
MFA_ENROLLED = register_action("mfa.enrolled", RecoveryCodeDetails)
MFA_RECOVERY_CODE_USED = register_action("mfa.recovery_code_used", RecoveryCodeDetails)
