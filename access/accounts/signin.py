"""Sign-in with password (and second factor), refresh-token rotation, sign-out, token checks.

Sign-in answers the same ``invalid-credentials`` problem, after the same argon2 verification, for
an unknown email, a wrong password, a suspended or deleted account and a wrong code, so responses
do not reveal which accounts exist. Failed attempts are stored (as keyed hashes of the user name,
never the name itself) in a transaction of their own so they count even though the request fails;
too many of them for one user name or from one client address make further attempts wait, and the
server answers 429 with ``Retry-After`` instead of sleeping.

Refresh tokens are opaque random strings stored as SHA-256 hashes. Each sign-in starts a family;
every use of a refresh token marks it used and issues the next one of the same family. Presenting an
already-used token means it was copied: the whole family is revoked, which also ends the access
tokens of that sign-in (they carry the family id as ``sid``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from access.accounts import mfa, repository
from access.accounts.actions import (
    AUTH_REFRESH_REUSED,
    AUTH_REFRESHED,
    AUTH_SIGNED_IN,
    AUTH_SIGNED_OUT,
    MFA_RECOVERY_CODE_USED,
    RecoveryCodeDetails,
    SignInDetails,
    SignInMethod,
)
from access.accounts.exceptions import (
    InvalidCredentials,
    InvalidToken,
    MfaEnrolmentRequired,
    SecondFactorRequired,
    SignInThrottled,
)
from access.accounts.models import Account, LoginAttempt, RefreshToken
from access.accounts.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from access.accounts.service import account_roles, needs_mfa, primary_role
from access.accounts.tokens import ENROLMENT_SCOPE, AccessClaims, IssuedToken, TokenService
from access.audit.actions import Role
from access.audit.service import Actor, record, record_denied
from access.principal import Principal
from infra.db import as_utc
from infra.keys import KeyBackend
from infra.settings import Settings

WRONG = "wrong email address, password or code"
_MAX_ADDRESS_DELAY_SECONDS = 30


@dataclass(frozen=True)
class AuthEnvironment:
    """What sign-in and token checks need from the process: keys, settings and the token service."""

    keys: KeyBackend
    settings: Settings
    tokens: TokenService


@dataclass(frozen=True)
class SignInResult:
    """Tokens handed out by a sign-in or a refresh."""

    access: IssuedToken
    refresh_token: str | None
    restricted: bool


def _now() -> datetime:
    return datetime.now(UTC)


def username_key(settings: Settings, username: str) -> str:
    """Keyed hash of a submitted user name, so attempts can be counted without storing it."""
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, username.strip().lower().encode(), hashlib.sha256).hexdigest()


def _throttle(session: Session, settings: Settings, key: str, address: str, now: datetime) -> None:
    window = now - timedelta(seconds=settings.login_lockout_seconds)
    waits: list[float] = []
    failures = repository.failures_for_username(session, key, window)
    if failures:
        count, last = len(failures), failures[-1]
        if count >= settings.login_max_failures_per_account:
            waits.append((last - now).total_seconds() + settings.login_lockout_seconds)
        elif count >= settings.login_failures_before_delay:
            delay = 2 ** (count - settings.login_failures_before_delay + 1)
            waits.append((last - now).total_seconds() + delay)
    count, last_from_address = repository.failures_from_address(session, address, window)
    if last_from_address is not None:
        since_last = (last_from_address - now).total_seconds()
        # Many people may share one address (a school's network), so its delays start later and
        # stay short; only the hard limit locks the address out.
        half = max(1, settings.login_max_failures_per_address // 2)
        if count >= settings.login_max_failures_per_address:
            waits.append(since_last + settings.login_lockout_seconds)
        elif count >= half:
            waits.append(since_last + min(2 ** (count - half + 1), _MAX_ADDRESS_DELAY_SECONDS))
    wait = max(waits, default=0.0)
    if wait > 0:
        raise SignInThrottled(max(1, math.ceil(wait)))


def _store_attempt(session: Session, key: str, address: str, *, succeeded: bool) -> None:
    attempt = LoginAttempt(username_key=key, address=address[:64], succeeded=succeeded, at=_now())
    if succeeded:
        session.add(attempt)
        return
    repository.after_transaction(session, lambda own: own.add(attempt))


def _fail(
    session: Session, key: str, address: str, account: Account | None, error: str
) -> InvalidCredentials:
    _store_attempt(session, key, address, succeeded=False)
    actor = (
        Actor(account.id, primary_role(account)) if account is not None else Actor("unknown", Role.anonymous)
    )
    record_denied(session, actor, AUTH_SIGNED_IN, error=error, target_type="account", target_id=actor.id)
    return InvalidCredentials(WRONG)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_refresh(session: Session, env: AuthEnvironment, account: Account, family_id: str) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            token_hash=_hash_token(token),
            family_id=family_id,
            account_id=account.id,
            expires_at=_now() + timedelta(seconds=env.settings.refresh_token_ttl_seconds),
        )
    )
    return token


def _issue(
    env: AuthEnvironment, account: Account, session_id: str, *, scope: str | None = None
) -> IssuedToken:
    roles = [] if scope == ENROLMENT_SCOPE else sorted(account_roles(account))
    return env.tokens.issue(
        subject=account.id,
        session_id=session_id,
        roles=roles,
        country=account.country,
        schools=list(account.schools),
        scope=scope,
    )


def sign_in(
    session: Session, env: AuthEnvironment, *, username: str, password: str, code: str | None, address: str
) -> SignInResult:
    """Check the credentials and hand out tokens (a restricted one when MFA must be enrolled first)."""
    now = _now()
    key = username_key(env.settings, username)
    _throttle(session, env.settings, key, address, now)
    account = repository.by_email(session, username.strip().lower())
    # Verify against a dummy hash when there is no usable account, so every answer takes as long.
    usable = account is not None and account.status == "active"
    matches = verify_password(
        account.password_hash if account is not None and usable else dummy_hash(), password
    )
    if account is None or not usable or not matches:
        raise _fail(session, key, address, account, "invalid_credentials")
    method = SignInMethod.single_factor
    if account.mfa_enrolled:
        if not code:
            _store_attempt(session, key, address, succeeded=False)
            raise SecondFactorRequired(
                "this account needs a one-time code: send the authenticator code (or a recovery code) "
                "in the `totp` form field",
                extra={"mfa_required": True},
            )
        # Lock the row so two requests with the same code cannot both pass the replay check.
        session.refresh(account, with_for_update=True)
        second = _second_factor(session, env, account, code.strip())
        if second is None:
            raise _fail(session, key, address, account, "invalid_second_factor")
        method = second
    _store_attempt(session, key, address, succeeded=True)
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    restricted = needs_mfa(account) and not account.mfa_enrolled
    family_id = str(uuid.uuid4())
    refresh = None if restricted else _new_refresh(session, env, account, family_id)
    session.flush()
    record(
        session,
        Actor(account.id, primary_role(account)),
        AUTH_SIGNED_IN,
        target_type="account",
        target_id=account.id,
        details=SignInDetails(method=method, restricted=restricted),
    )
    access = _issue(env, account, family_id, scope=ENROLMENT_SCOPE if restricted else None)
    return SignInResult(access=access, refresh_token=refresh, restricted=restricted)


def _second_factor(
    session: Session, env: AuthEnvironment, account: Account, code: str
) -> SignInMethod | None:
    if code.isdigit() and len(code) == 6:
        return SignInMethod.totp if mfa.check_totp(env.keys, account, code) else None
    left = mfa.use_recovery_code(session, account, code)
    if left is None:
        return None
    record(
        session,
        Actor(account.id, primary_role(account)),
        MFA_RECOVERY_CODE_USED,
        target_type="account",
        target_id=account.id,
        details=RecoveryCodeDetails(recovery_codes=left),
    )
    return SignInMethod.recovery_code


def refresh(session: Session, env: AuthEnvironment, token: str) -> SignInResult:
    """Exchange a refresh token for new tokens; a reused token revokes its whole family."""
    row = repository.refresh_token_for_update(session, _hash_token(token))
    if row is None or row.revoked_at is not None:
        raise InvalidToken("the refresh token is unknown or revoked")
    now = _now()
    if row.used_at is not None:
        family_id = row.family_id
        repository.after_transaction(session, lambda own: repository.revoke_family(own, family_id, now))
        record_denied(
            session,
            Actor(row.account_id, Role.anonymous),
            AUTH_REFRESH_REUSED,
            error="refresh_token_reused",
            target_type="account",
            target_id=row.account_id,
        )
        raise InvalidToken("the refresh token was already used; every token of this sign-in is revoked")
    if as_utc(row.expires_at) <= now:
        raise InvalidToken("the refresh token has expired: sign in again")
    account = repository.by_id(session, row.account_id)
    if account is None or account.status != "active":
        raise InvalidToken("the account is not active")
    row.used_at = now
    new_refresh = _new_refresh(session, env, account, row.family_id)
    session.flush()
    record(
        session,
        Actor(account.id, primary_role(account)),
        AUTH_REFRESHED,
        target_type="account",
        target_id=account.id,
    )
    return SignInResult(
        access=_issue(env, account, row.family_id), refresh_token=new_refresh, restricted=False
    )


def sign_out(session: Session, principal: Principal) -> None:
    """End the caller's sign-in: its refresh tokens and access tokens stop working."""
    if principal.session_id is not None:
        repository.revoke_family(session, principal.session_id, _now())
    record(session, principal.actor, AUTH_SIGNED_OUT, target_type="account", target_id=principal.account_id)


def authenticate(
    session: Session, env: AuthEnvironment, token: str, *, allow_enrolment: bool = False
) -> Principal:
    """The principal of a valid access token whose account is active and whose sign-in is live."""
    claims = env.tokens.verify(token)
    account = repository.by_id(session, claims.subject)
    if account is None or account.status != "active":
        raise InvalidToken("the account of this token is suspended or deleted")
    if repository.family_revoked(session, claims.session_id):
        raise InvalidToken("this sign-in has ended: sign in again")
    if claims.restricted and not allow_enrolment:
        raise MfaEnrolmentRequired(
            "your roles need a second factor: enrol one at /api/auth/mfa/enrol, then sign in again"
        )
    return _principal(account, claims)


def _principal(account: Account, claims: AccessClaims) -> Principal:
    # Roles must be both in the token and still on the account: a role taken away applies at
    # once, a role given applies from the next sign-in (with MFA if it needs it).
    roles = claims.roles & account_roles(account)
    steward = Role.data_steward in roles
    return Principal(
        account_id=account.id,
        roles=frozenset(roles),
        country=account.country if steward else None,
        schools=frozenset(account.schools) if steward else frozenset(),
        token_id=claims.token_id,
        session_id=claims.session_id,
    )
