"""Identities at rest: AES-256-GCM ciphertexts and HMAC-SHA256 blind indexes.

Two data keys live in ``consent_identity_key``, each wrapped by the key-management backend's
``consent-identity`` key (a key file, or Vault/OpenBao transit). A process unwraps each once and keeps
it in memory, so importing 18,000 students costs two calls to the backend, not 36,000. Rotating the
wrapping key rewraps these two tokens; rows are untouched.

* ``encrypt``/``decrypt``: the field name is the associated data, so a guardian's email ciphertext
  cannot be passed off as a name.
* ``blind_index``: a keyed hash of the normalised value, for exact look-ups (a guardian's email on
  re-import, a pupil reference) without storing the value. Without the key the index cannot be
  recomputed from a guessed value.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable, Iterable
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consent.rosters.models import IdentityKey
from infra.errors import EnclaveError
from infra.keys import KeyBackend, WrappedKey

WRAPPING_KEY = "consent-identity"
_FORMAT = b"\x01"


class IdentityField(StrEnum):
    """The identity fields that are stored encrypted; each is its own associated data."""

    student_ref = "student_ref"
    guardian_name = "guardian_name"
    guardian_email = "guardian_email"
    teacher_name = "teacher_name"
    teacher_email = "teacher_email"


class _Purpose(StrEnum):
    cipher = "cipher"
    lookup = "index"


class IdentityDecryptFailed(EnclaveError):
    """A stored identity does not decrypt: altered bytes or a lost key. Never shown to callers as data."""

    status_code = 500


def normalise_email(email: str) -> str:
    """The form an email address is indexed under: trimmed and lower-cased."""
    return email.strip().lower()


class IdentityProtector:
    """Encrypts, decrypts and indexes identity fields with the project's two identity data keys."""

    def __init__(self, keys: KeyBackend) -> None:
        self._keys = keys
        self._lock = threading.Lock()
        self._unwrapped: dict[str, bytes] = {}
        """Wrapped token -> data key. Keyed by token so a replaced row is never served a stale key."""

    def _data_key(self, session: Session, purpose: _Purpose) -> bytes:
        # One look-up per transaction and purpose (a bulk import encrypts tens of thousands of
        # values); per transaction, because a rolled-back one may have created a key that is gone.
        transaction = session.get_transaction()
        marker, keys = session.info.get("identity_keys", (None, {}))
        if marker is not transaction:
            keys = {}
            session.info["identity_keys"] = (transaction, keys)
        cached: bytes | None = keys.get(purpose.value)
        if cached is None:
            cached = keys[purpose.value] = self._load_key(session, purpose)
        return cached

    def _load_key(self, session: Session, purpose: _Purpose) -> bytes:
        context = f"{WRAPPING_KEY}:{purpose.value}".encode()
        row = session.get(IdentityKey, purpose.value)
        if row is None:
            fresh = os.urandom(32)
            wrapped = self._keys.wrap(WRAPPING_KEY, fresh, context)
            try:
                with session.begin_nested():
                    session.add(IdentityKey(purpose=purpose.value, wrapped=wrapped.token))
                    session.flush()
            except IntegrityError:
                pass  # another process created it first: use theirs
            row = session.execute(
                select(IdentityKey).where(IdentityKey.purpose == purpose.value)
            ).scalar_one()
        token = row.wrapped
        with self._lock:
            key = self._unwrapped.get(token)
        if key is None:
            key = self._keys.unwrap(WRAPPING_KEY, WrappedKey(token), context)
            with self._lock:
                self._unwrapped[token] = key
        return key

    def encrypt(self, session: Session, field: IdentityField, value: str) -> bytes:
        """The ciphertext of ``value``: format byte, 12-byte nonce, AES-256-GCM output."""
        nonce = os.urandom(12)
        key = self._data_key(session, _Purpose.cipher)
        return _FORMAT + nonce + AESGCM(key).encrypt(nonce, value.encode(), field.value.encode())

    def decrypt(self, session: Session, field: IdentityField, blob: bytes) -> str:
        """The plaintext of a ciphertext made by ``encrypt`` for the same field."""
        if not blob:
            return ""  # emptied by an erasure
        if blob[:1] != _FORMAT or len(blob) < 29:
            raise IdentityDecryptFailed(f"stored {field.value} has an unknown format")
        key = self._data_key(session, _Purpose.cipher)
        try:
            return AESGCM(key).decrypt(blob[1:13], blob[13:], field.value.encode()).decode()
        except InvalidTag:
            raise IdentityDecryptFailed(f"stored {field.value} does not decrypt") from None

    def blind_index(self, session: Session, field: IdentityField, value: str) -> str:
        """Hex HMAC-SHA256 of the field name and the (already normalised) value."""
        return self.blind_indexer(session, field)([value])[0]

    def blind_indexes(self, session: Session, field: IdentityField, values: Iterable[str]) -> list[str]:
        """``blind_index`` of many values, in order."""
        return self.blind_indexer(session, field)(values)

    def blind_indexer(self, session: Session, field: IdentityField) -> Callable[[Iterable[str]], list[str]]:
        """A function giving ``blind_index`` of many values, with the key read now, once.

        For a file of millions of rows: the function needs no session, so batches can be hashed
        while the session is busy with an earlier one.
        """
        # The key and the field's prefix are absorbed once; each value continues from a copy of
        # that state (the same HMAC, about a third less work per value than keying it again).
        keyed = hmac.new(self._data_key(session, _Purpose.lookup), field.value.encode() + b"\x00", "sha256")

        def indexes(values: Iterable[str]) -> list[str]:
            found = []
            for value in values:
                state = keyed.copy()
                state.update(value.encode())
                found.append(state.hexdigest())
            return found

        return indexes
