"""TOTP second factor and one-time recovery codes.

The TOTP secret is wrapped by the key backend with a context bound to the account id, so a secret
copied onto another account's row does not open. A code is accepted for the current 30-second step
or one step either side (clock drift), and only for a step later than the last accepted one: a
code seen once — by a shoulder-surfer or a proxy log — cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime

import pyotp
import segno
from sqlalchemy.orm import Session

from access.accounts import repository
from access.accounts.exceptions import MfaStateError
from access.accounts.models import Account, RecoveryCode
from infra.keys import KeyBackend, UnwrapFailed, WrappedKey

TOTP_KEY = "account-totp"
ISSUER = "LET'S CARE enclave"
STEP_SECONDS = 30
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes


def _context(account_id: str) -> bytes:
    return f"account={account_id};purpose=totp".encode()


def _store_secret(keys: KeyBackend, account: Account, secret: str) -> None:
    account.totp_secret = keys.wrap(TOTP_KEY, secret.encode(), _context(account.id)).token


def _secret(keys: KeyBackend, account: Account) -> str:
    if account.totp_secret is None:
        raise MfaStateError("no second factor has been set up for this account")
    try:
        return keys.unwrap(TOTP_KEY, WrappedKey(account.totp_secret), _context(account.id)).decode()
    except UnwrapFailed as exc:
        raise MfaStateError("the stored second factor does not open; an administrator must reset it") from exc


def provisioning_uri(account_id: str, secret: str) -> str:
    """The otpauth URI of a secret; labelled with the account id, never the email address."""
    return pyotp.TOTP(secret).provisioning_uri(name=account_id, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """An SVG QR code of ``uri``."""
    return str(segno.make(uri, error="m").svg_inline(scale=4))


def start_enrolment(keys: KeyBackend, account: Account) -> str:
    """Give the account a new, unconfirmed TOTP secret and return it (refused once enrolled)."""
    if account.mfa_enrolled:
        raise MfaStateError("a second factor is already enrolled; an administrator must reset it first")
    secret = pyotp.random_base32()
    _store_secret(keys, account, secret)
    account.totp_last_step = None
    return secret


def _matching_step(secret: str, code: str, now: float) -> int | None:
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def check_totp(keys: KeyBackend, account: Account, code: str, *, now: float | None = None) -> bool:
    """Accept a TOTP code once: true and remembered when valid and newer than the last one used."""
    step = _matching_step(_secret(keys, account), code.strip(), time.time() if now is None else now)
    if step is None or (account.totp_last_step is not None and step <= account.totp_last_step):
        return False
    account.totp_last_step = step
    return True


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").strip().lower().encode()).hexdigest()


def issue_recovery_codes(session: Session, account: Account) -> list[str]:
    """Replace the account's recovery codes with new ones; returns them (they are shown only once)."""
    repository.delete_recovery_codes(session, account.id)
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(RecoveryCode(account_id=account.id, code_hash=_hash_code(raw)))
    session.flush()
    return codes


def use_recovery_code(session: Session, account: Account, code: str) -> int | None:
    """Spend a recovery code; the number of codes left, or None when it is not a valid unused code."""
    wanted = _hash_code(code)
    unused = repository.unused_recovery_codes(session, account.id)
    match = next((row for row in unused if hmac.compare_digest(row.code_hash, wanted)), None)
    if match is None:
        return None
    match.used_at = datetime.now(UTC)
    session.flush()
    return len(unused) - 1


def confirm_enrolment(session: Session, keys: KeyBackend, account: Account, code: str) -> list[str]:
    """Turn MFA on once the app shows a valid code; returns fresh recovery codes."""
    if account.mfa_enrolled:
        raise MfaStateError("a second factor is already enrolled")
    if account.totp_secret is None:
        raise MfaStateError("start the enrolment first")
    if not check_totp(keys, account, code):
        return []
    account.mfa_enrolled = True
    return issue_recovery_codes(session, account)


def enrol_now(session: Session, keys: KeyBackend, account: Account) -> tuple[str, list[str]]:
    """Enrol without a confirmation round (first admin on the command line, test accounts)."""
    secret = start_enrolment(keys, account)
    account.mfa_enrolled = True
    return secret, issue_recovery_codes(session, account)
