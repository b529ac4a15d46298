"""Staff accounts: creation, changes, suspension and deletion. Every write is audited.

Deleting an account keeps its row (ledger entries refer to its id) but erases the email address and
name and revokes every sign-in, so nothing personal stays behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from access.accounts import repository
from access.accounts.actions import (
    ACCOUNT_CREATED,
    ACCOUNT_DELETED,
    ACCOUNT_MFA_RESET,
    ACCOUNT_PASSWORD_CHANGED,
    ACCOUNT_REACTIVATED,
    ACCOUNT_SUSPENDED,
    ACCOUNT_UPDATED,
    AccountChangeDetails,
    AccountDetails,
)
from access.accounts.exceptions import (
    AccountConflict,
    AccountNotFound,
    InvalidAccountInput,
    InvalidCredentials,
)
from access.accounts.models import Account
from access.accounts.passwords import check_policy, hash_password, verify_password
from access.accounts.schemas import AccountCreate, AccountUpdate
from access.audit.actions import Role
from access.audit.service import Actor, record
from access.principal import MFA_ROLES, Principal


def account_roles(account: Account) -> frozenset[Role]:
    """The roles stored on an account."""
    return frozenset(Role(value) for value in account.roles)


def needs_mfa(account: Account) -> bool:
    """True when one of the account's roles may not act without a second factor."""
    return bool(account_roles(account) & MFA_ROLES)


def primary_role(account: Account) -> Role:
    """The account's most privileged role (ledger label)."""
    return Principal(account.id, account_roles(account)).primary_role


def _check_scope(roles: Sequence[Role], country: str | None, schools: Sequence[str]) -> None:
    if Role.data_steward in roles and country is None:
        raise InvalidAccountInput("a data steward needs the country they serve")
    if Role.data_steward not in roles and (country is not None or schools):
        raise InvalidAccountInput("only data stewards have a country or school scope")


def _details(account: Account) -> AccountDetails:
    return AccountDetails(
        roles=sorted(account_roles(account)), country=account.country, schools=tuple(account.schools)
    )


def create_account(session: Session, actor: Actor, data: AccountCreate) -> Account:
    """Create an active account with a policy-checked password (no MFA yet)."""
    _check_scope(data.roles, data.country, data.schools)
    check_policy(data.password)
    if repository.by_email(session, data.email) is not None:
        raise AccountConflict("an account with this email address already exists")
    account = Account(
        email=data.email,
        display_name=data.display_name,
        roles=[role.value for role in data.roles],
        country=data.country,
        schools=list(data.schools),
        password_hash=hash_password(data.password),
        status="active",
        mfa_enrolled=False,
    )
    session.add(account)
    session.flush()
    record(
        session,
        actor,
        ACCOUNT_CREATED,
        target_type="account",
        target_id=account.id,
        details=_details(account),
    )
    return account


def get_account(session: Session, account_id: str) -> Account:
    """An account that is not deleted."""
    account = repository.by_id(session, account_id)
    if account is None or account.status == "deleted":
        raise AccountNotFound("no such account")
    return account


def list_accounts(session: Session) -> Sequence[Account]:
    """Every account that is not deleted."""
    return repository.list_accounts(session)


def _keep_an_admin(session: Session, account: Account) -> None:
    if "admin" in account.roles and repository.active_admins(session) == [account.id]:
        raise AccountConflict("this is the last active administrator; appoint another one first")


def _not_self(principal: Principal, account: Account, what: str) -> None:
    if principal.account_id == account.id:
        raise AccountConflict(f"administrators cannot {what} their own account")


def update_account(session: Session, principal: Principal, account_id: str, data: AccountUpdate) -> Account:
    """Change name, roles or steward scope."""
    account = get_account(session, account_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("roles") is None:
        changes.pop("roles", None)
    if changes.get("display_name") is None:
        changes.pop("display_name", None)
    roles = [Role(r) for r in changes.get("roles", account.roles)]
    country = changes.get("country", account.country)
    schools = changes["schools"] if changes.get("schools") is not None else account.schools
    if Role.data_steward not in roles and "country" not in changes and "schools" not in changes:
        # Taking the steward role away takes its scope with it.
        country, schools = None, []
    _check_scope(roles, country, schools)
    if "roles" in changes and Role.admin not in roles:
        if principal.account_id == account.id:
            raise AccountConflict("administrators cannot remove their own admin role")
        _keep_an_admin(session, account)
    changed = []
    for name, value in (
        ("display_name", changes.get("display_name", account.display_name)),
        ("roles", sorted(role.value for role in roles)),
        ("country", country),
        ("schools", list(schools)),
    ):
        if getattr(account, name) != value:
            setattr(account, name, value)
            changed.append(name)
    if changed:
        session.flush()
        details = AccountChangeDetails(
            changed=changed,
            roles=sorted(account_roles(account)),
            country=account.country,
            schools=tuple(account.schools),
        )
        record(
            session,
            principal.actor,
            ACCOUNT_UPDATED,
            target_type="account",
            target_id=account.id,
            details=details,
        )
    return account


def suspend_account(session: Session, principal: Principal, account_id: str) -> Account:
    """Stop an account from signing in or using its tokens, reversibly."""
    account = get_account(session, account_id)
    _not_self(principal, account, "suspend")
    if account.status != "suspended":
        _keep_an_admin(session, account)
        account.status = "suspended"
        repository.revoke_account_sessions(session, account.id, datetime.now(UTC))
        session.flush()
        record(session, principal.actor, ACCOUNT_SUSPENDED, target_type="account", target_id=account.id)
    return account


def reactivate_account(session: Session, principal: Principal, account_id: str) -> Account:
    """Let a suspended account sign in again."""
    account = get_account(session, account_id)
    if account.status != "active":
        account.status = "active"
        session.flush()
        record(session, principal.actor, ACCOUNT_REACTIVATED, target_type="account", target_id=account.id)
    return account


def delete_account(session: Session, principal: Principal, account_id: str) -> None:
    """Delete an account: its sign-ins end and its email address and name are erased."""
    account = get_account(session, account_id)
    _not_self(principal, account, "delete")
    _keep_an_admin(session, account)
    account.status = "deleted"
    account.email = f"deleted-{account.id}@invalid"
    account.display_name = "deleted account"
    account.password_hash = "!"  # noqa: S105 - not a hash: no password can match it
    account.totp_secret = None
    account.mfa_enrolled = False
    repository.revoke_account_sessions(session, account.id, datetime.now(UTC))
    repository.delete_recovery_codes(session, account.id)
    session.flush()
    record(session, principal.actor, ACCOUNT_DELETED, target_type="account", target_id=account.id)


def reset_mfa(session: Session, principal: Principal, account_id: str) -> Account:
    """Remove a lost second factor: the person enrols again at next sign-in; their sign-ins end."""
    account = get_account(session, account_id)
    _not_self(principal, account, "reset the second factor of")
    account.totp_secret = None
    account.mfa_enrolled = False
    account.totp_last_step = None
    repository.delete_recovery_codes(session, account.id)
    repository.revoke_account_sessions(session, account.id, datetime.now(UTC))
    session.flush()
    record(session, principal.actor, ACCOUNT_MFA_RESET, target_type="account", target_id=account.id)
    return account


def change_password(session: Session, principal: Principal, current: str, new: str) -> None:
    """Change the caller's own password after checking the current one."""
    account = get_account(session, principal.account_id)
    if not verify_password(account.password_hash, current):
        raise InvalidCredentials("the current password is wrong")
    check_policy(new)
    account.password_hash = hash_password(new)
    session.flush()
    record(session, principal.actor, ACCOUNT_PASSWORD_CHANGED, target_type="account", target_id=account.id)
