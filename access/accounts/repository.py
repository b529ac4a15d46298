"""Queries on accounts, refresh tokens, recovery codes and sign-in attempts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from access.accounts.models import Account, LoginAttempt, RecoveryCode, RefreshToken
from infra.db import as_utc
from infra.logging import get_logger

log = get_logger(__name__)


def by_id(session: Session, account_id: str) -> Account | None:
    """The account with this id, deleted or not."""
    return session.get(Account, account_id)


def by_email(session: Session, email: str) -> Account | None:
    """The account with this (normalised) email address."""
    return session.scalars(select(Account).where(Account.email == email)).first()


def list_accounts(session: Session, *, include_deleted: bool = False) -> Sequence[Account]:
    """Every account, oldest first."""
    query = select(Account).order_by(Account.created_at, Account.id)
    if not include_deleted:
        query = query.where(Account.status != "deleted")
    return session.scalars(query).all()


def active_admins(session: Session) -> list[str]:
    """Ids of active accounts holding the admin role (filtered in Python: roles is a JSON list)."""
    rows = session.execute(select(Account.id, Account.roles).where(Account.status == "active")).all()
    return [account_id for account_id, roles in rows if "admin" in roles]


def refresh_token_for_update(session: Session, token_hash: str) -> RefreshToken | None:
    """The refresh token with this hash, locked until the transaction ends."""
    return session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    ).first()


def revoke_family(session: Session, family_id: str, now: datetime) -> int:
    """Revoke every refresh token of one sign-in; returns how many were still live."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0) or 0)


def revoke_account_sessions(session: Session, account_id: str, now: datetime) -> None:
    """Revoke every refresh token of an account (all its sign-ins)."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.account_id == account_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now),
        execution_options={"synchronize_session": False},
    )


def family_revoked(session: Session, family_id: str) -> bool:
    """True when the sign-in's refresh tokens were revoked (logout, reuse, suspension)."""
    found = session.scalar(
        select(RefreshToken.id)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_not(None))
        .limit(1)
    )
    return found is not None


def unused_recovery_codes(session: Session, account_id: str) -> Sequence[RecoveryCode]:
    """The account's recovery codes not used yet."""
    return session.scalars(
        select(RecoveryCode).where(RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))
    ).all()


def delete_recovery_codes(session: Session, account_id: str) -> None:
    """Remove every recovery code of an account (before issuing new ones)."""
    for code in session.scalars(select(RecoveryCode).where(RecoveryCode.account_id == account_id)):
        session.delete(code)


def failures_for_username(session: Session, username_key: str, since: datetime) -> list[datetime]:
    """Times of failed sign-ins for a user name since ``since`` and since its last success."""
    last_success = session.scalar(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.username_key == username_key, LoginAttempt.succeeded.is_(True)
        )
    )
    start = max(since, as_utc(last_success)) if last_success is not None else since
    return [
        as_utc(moment)
        for moment in session.scalars(
            select(LoginAttempt.at)
            .where(
                LoginAttempt.username_key == username_key,
                LoginAttempt.succeeded.is_(False),
                LoginAttempt.at > start,
            )
            .order_by(LoginAttempt.at)
        )
    ]


def failures_from_address(session: Session, address: str, since: datetime) -> tuple[int, datetime | None]:
    """How many sign-ins failed from ``address`` since ``since``, and when the last one did."""
    count, last = session.execute(
        select(func.count(), func.max(LoginAttempt.at)).where(
            LoginAttempt.address == address, LoginAttempt.succeeded.is_(False), LoginAttempt.at > since
        )
    ).one()
    return int(count), as_utc(last) if last is not None else None


_DEFERRED = "accounts_after_transaction"
_hook_installed = False


def after_transaction(session: Session, work: Callable[[Session], object]) -> None:
    """Run ``work`` in a transaction of its own once the caller's transaction has ended.

    Used for what must outlive a failing request — counting a failed sign-in, revoking a refresh
    token family on reuse — without waiting on rows the request itself has locked. The work runs
    whether the caller commits or rolls back; on PostgreSQL in production it gets its own
    connection, and when the caller is bound to one connection (tests) it becomes a savepoint
    after the caller's own savepoint has ended.
    """
    global _hook_installed  # noqa: PLW0603 - one process-wide listener
    if not _hook_installed:
        event.listen(Session, "after_transaction_end", _run_deferred)
        _hook_installed = True
    if not session.in_transaction():
        session.begin()
    session.info.setdefault(_DEFERRED, []).append(work)


def _run_deferred(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None or not session.info.get(_DEFERRED):
        return
    pending: list[Callable[[Session], object]] = session.info.pop(_DEFERRED)
    try:
        with Session(bind=session.get_bind(), join_transaction_mode="create_savepoint") as fresh:
            for work in pending:
                work(fresh)
            fresh.commit()
    except Exception:
        # The request has already failed or finished; raising here would only hide its outcome.
        log.exception("accounts.deferred_write_lost", writes=len(pending))
