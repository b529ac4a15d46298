"""Envelope encryption of message contents: AES-256-GCM under one data key wrapped by the key backend.

The data key lives in ``email_key``, wrapped by the backend's ``email-outbox`` key (a key file, or
Vault/OpenBao transit). Each process unwraps it once and keeps it in memory, keyed by the wrapped
token, so a replaced key row is never served a stale key. The message id is the associated data: a
ciphertext copied onto another row does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.email.models import EmailKey
from infra.errors import EnclaveError
from infra.keys import KeyBackend, WrappedKey

WRAPPING_KEY = "email-outbox"
_PURPOSE = "content"
_CONTEXT = f"{WRAPPING_KEY}:{_PURPOSE}".encode()
_FORMAT = b"\x01"

_lock = threading.Lock()
_unwrapped: dict[str, bytes] = {}
"""Wrapped token -> data key, for this process."""


class ContentDecryptFailed(EnclaveError):
    """A stored message does not decrypt: altered bytes, a moved ciphertext or a lost key."""

    status_code = 500


@dataclass(frozen=True)
class Content:
    """What is encrypted at rest: everything that names or reaches the recipient."""

    to: str
    subject: str
    text: str
    html: str | None


def normalise_address(address: str) -> str:
    """The form an address is hashed under: trimmed and lower-cased."""
    return address.strip().lower()


def _data_key(session: Session, keys: KeyBackend) -> bytes:
    row = session.get(EmailKey, _PURPOSE)
    if row is None:
        wrapped = keys.wrap(WRAPPING_KEY, os.urandom(32), _CONTEXT)
        try:
            with session.begin_nested():
                session.add(EmailKey(purpose=_PURPOSE, wrapped=wrapped.token))
                session.flush()
        except IntegrityError:
            pass  # another process created it first: use theirs
        row = session.get(EmailKey, _PURPOSE, populate_existing=True)
        if row is None:  # pragma: no cover - the row was just written or read
            raise ContentDecryptFailed("the email data key could not be stored")
    token = row.wrapped
    with _lock:
        key = _unwrapped.get(token)
    if key is None:
        key = keys.unwrap(WRAPPING_KEY, WrappedKey(token), _CONTEXT)
        with _lock:
            _unwrapped[token] = key
    return key


def seal(session: Session, keys: KeyBackend, message_id: str, content: Content) -> bytes:
    """The ciphertext of ``content`` bound to ``message_id``: format byte, nonce, AES-GCM output."""
    payload = json.dumps(
        {"to": content.to, "subject": content.subject, "text": content.text, "html": content.html},
        ensure_ascii=False,
    ).encode()
    nonce = os.urandom(12)
    return _FORMAT + nonce + AESGCM(_data_key(session, keys)).encrypt(nonce, payload, message_id.encode())


def open_sealed(session: Session, keys: KeyBackend, message_id: str, blob: bytes) -> Content:
    """The content sealed by :func:`seal` for the same message id."""
    if blob[:1] != _FORMAT or len(blob) < 29:
        raise ContentDecryptFailed("stored email content has an unknown format")
    try:
        payload = AESGCM(_data_key(session, keys)).decrypt(blob[1:13], blob[13:], message_id.encode())
    except InvalidTag:
        raise ContentDecryptFailed("stored email content does not decrypt") from None
    data = json.loads(payload)
    return Content(to=data["to"], subject=data["subject"], text=data["text"], html=data["html"])


def recipient_hash(session: Session, keys: KeyBackend, address: str) -> str:
    """Hex HMAC-SHA256 of the normalised address under a key derived from the data key."""
    index_key = hmac.new(_data_key(session, keys), b"email-outbox:recipient-index", hashlib.sha256).digest()
    return hmac.new(index_key, normalise_address(address).encode(), hashlib.sha256).hexdigest()
