"""Pick the key backend named by the settings."""

from __future__ import annotations

from infra.keys.base import KeyBackend
from infra.settings import KeyBackendKind, Settings


def key_backend_from_settings(settings: Settings) -> KeyBackend:
    """The configured backend: key files or Vault/OpenBao transit."""
    if settings.key_backend is KeyBackendKind.vault:
        from infra.keys.vault import VaultKeyBackend

        return VaultKeyBackend.from_settings(settings)
    from infra.keys.file import FileKeyBackend

    return FileKeyBackend(settings.effective_key_dir)
