"""The key-management interface shared by the key-file and Vault/OpenBao transit backends.

Keys are named and versioned and never leave the backend in the transit case. Three kinds:

- ``aead`` key-encryption keys wrap per-object data keys (envelope encryption); rotation adds a
  version, old versions still unwrap until retired, and ``rewrap`` moves a wrapped key to the newest
  version without touching the data it protects;
- ``ed25519`` signing keys sign audit checkpoints; every version's public key stays published so old
  signatures still verify;
- ``hmac`` keys compute keyed pseudonyms; they are never rotated, since a new key would change every
  pseudonym;
- ``ecdsa_p256`` keys sign access tokens (JWS ``ES256``): the signature comes back in JWS form (raw
  ``r || s``) and every version that is not retired publishes its public key as PEM, so tokens
  signed before a rotation keep verifying until that version is retired.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from infra.errors import EnclaveError, ServiceUnavailable


class KeyKind(enum.StrEnum):
    """What a named key is for."""

    aead = "aead"
    ed25519 = "ed25519"
    hmac = "hmac"
    ecdsa_p256 = "ecdsa_p256"


class KeyManagementError(EnclaveError):
    """A key operation failed for a reason retrying will not fix (wrong kind, retired version, bad input)."""

    status_code = 500
    type_slug = "key-error"
    title = "Key management error"


class KeyBackendUnavailable(ServiceUnavailable):
    """The key backend cannot be reached or refused our token; nothing was changed."""

    type_slug = "keys-unavailable"
    title = "Key management unavailable"


class UnwrapFailed(KeyManagementError):
    """A wrapped data key does not open: wrong context, altered bytes, or a retired key version."""

    type_slug = "unwrap-failed"
    title = "Data key cannot be unwrapped"


@dataclass(frozen=True)
class Signature:
    """A signature and the id of the key version that made it (``<name>:v<version>``)."""

    key_id: str
    signature: bytes


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under one version of a key-encryption key, as one storable string.

    The token is ``<scheme>:v<version>:<base64>``; Vault's own ciphertext format fits the same shape.
    """

    token: str

    @property
    def version(self) -> int:
        """The key-encryption key version that wrapped it."""
        parts = self.token.split(":", 2)
        if len(parts) != 3 or not parts[1].startswith("v") or not parts[1][1:].isdigit():
            raise UnwrapFailed("malformed wrapped key")
        return int(parts[1][1:])


def key_id(name: str, version: int) -> str:
    """The public identifier of one version of a named key."""
    return f"{name}:v{version}"


def version_of(name: str, kid: str) -> int:
    """The version number in a key id of ``name``; KeyManagementError if it belongs to another key."""
    prefix = f"{name}:v"
    if not kid.startswith(prefix) or not kid[len(prefix) :].isdigit():
        raise KeyManagementError(f"key id {kid!r} is not a version of {name!r}")
    return int(kid[len(prefix) :])


def check_name(name: str) -> str:
    """Refuse key names that could escape a folder or a transit path."""
    if not name or len(name) > 100 or not all(c.isalnum() or c in "-_" for c in name):
        raise KeyManagementError(f"invalid key name {name!r}: letters, digits, '-' and '_' only")
    return name


@runtime_checkable
class KeyBackend(Protocol):
    """Named, versioned keys: wrap/unwrap data keys, sign, keyed hashes, rotation."""

    def wrap(self, name: str, data_key: bytes, context: bytes) -> WrappedKey:
        """Encrypt a data key under the newest version of ``name``, bound to ``context``."""
        ...

    def unwrap(self, name: str, wrapped: WrappedKey, context: bytes) -> bytes:
        """Decrypt a wrapped data key; UnwrapFailed if context or bytes differ or the version is retired."""
        ...

    def rewrap(self, name: str, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        """Re-encrypt a wrapped data key under the newest version, without revealing it to the caller."""
        ...

    def rotate(self, name: str) -> int:
        """Add a new version of ``name`` (creating the key if absent); return the new version."""
        ...

    def latest_version(self, name: str) -> int:
        """The newest version of ``name`` (creating the key if absent)."""
        ...

    def retire(self, name: str, below: int) -> None:
        """Refuse to unwrap with versions older than ``below`` (after every data key was rewrapped)."""
        ...

    def sign(self, name: str, payload: bytes) -> Signature:
        """Sign ``payload`` with the newest version of the Ed25519 key ``name``."""
        ...

    def public_keys(self, name: str) -> dict[str, bytes]:
        """Raw Ed25519 public keys of every version of ``name``, by key id."""
        ...

    def hmac(self, name: str, data: bytes) -> bytes:
        """HMAC-SHA-256 of ``data`` under the keyed-hash key ``name`` (one key per pseudonym domain)."""
        ...

    def hmac_many(self, name: str, items: Sequence[bytes]) -> list[bytes]:
        """``hmac`` of many values in one go (one key read, or batched calls to transit)."""
        ...

    def jws_key_id(self, name: str) -> str:
        """The key id of the newest version of the ECDSA P-256 key ``name`` (created if absent)."""
        ...

    def sign_jws(self, name: str, key_id: str, signing_input: bytes) -> bytes:
        """ES256 signature (raw ``r || s``, 64 bytes) of a JWS signing input by one version of ``name``."""
        ...

    def jws_public_keys(self, name: str) -> dict[str, str]:
        """PEM public keys of the versions of ``name`` that are not retired, by key id."""
        ...

    def check(self) -> str:
        """Raise if the backend is unusable; otherwise a short description of it."""
        ...


def verify_signature(public_key: bytes, payload: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``payload`` by the raw ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True
