"""Password hashing (argon2id) and the password policy.

The policy follows NIST SP 800-63B: at least 12 characters, no composition rules, and no password
that is known to be common. ``common_passwords.txt`` holds ~500 entries taken from the heads of
widely published breach-frequency lists (the "most common passwords" tables of SecLists, NCSC and
yearly vendor reports), plus seasonal, local (project, city and "password" in the consortium's
languages) variants. Since nearly all of those are shorter than 12 characters, a password is also
refused when, lower-cased and with leading/trailing digits and symbols removed, it is a listed
entry, a listed entry repeated, or a run of one character — which catches ``Password2024!`` or
``qwertyqwerty`` as well as the literal entries.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from access.accounts.exceptions import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 256

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 "low memory" parameters
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased."""
    text = resources.files("access.accounts").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def _is_common(password: str) -> bool:
    lowered = password.lower()
    listed = common_passwords()
    if lowered in listed:
        return True
    core = _EDGES.sub("", lowered)
    if not core:
        return True  # only digits and symbols around nothing: a number or a keyboard run
    if core in listed or len(set(core)) <= 2:
        return True
    for size in range(1, len(core) // 2 + 1):
        if len(core) % size == 0 and core[:size] * (len(core) // size) == core and core[:size] in listed:
            return True
    return False


def check_policy(password: str) -> None:
    """Raise WeakPassword with the reason when ``password`` breaks the policy."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_LENGTH} characters")
    if _is_common(password):
        raise WeakPassword("the password is too common or built from a common password; choose another")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (with its own salt and parameters)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; never raises for a wrong or malformed hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against when the account is unknown, so both cases take as long."""
    return _hasher.hash("no account has this password: it only spends the same time")
