"""Key management: key files (embedded default) or Vault/OpenBao transit."""

from infra.keys.base import (
    KeyBackend,
    KeyBackendUnavailable,
    KeyKind,
    KeyManagementError,
    Signature,
    UnwrapFailed,
    WrappedKey,
    key_id,
    verify_signature,
)
from infra.keys.factory import key_backend_from_settings
from infra.keys.file import FileKeyBackend

__all__ = [
    "FileKeyBackend",
    "KeyBackend",
    "KeyBackendUnavailable",
    "KeyKind",
    "KeyManagementError",
    "Signature",
    "UnwrapFailed",
    "WrappedKey",
    "key_backend_from_settings",
    "key_id",
    "verify_signature",
]
