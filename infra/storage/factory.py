"""Pick the object-storage backend named by the settings."""

from __future__ import annotations

from infra.settings import Settings, StorageBackend
from infra.storage.base import ObjectStorage


def storage_from_settings(settings: Settings) -> ObjectStorage:
    """The configured backend: local folder or S3."""
    if settings.storage_backend is StorageBackend.s3:
        from infra.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    from infra.storage.local import LocalStorage

    return LocalStorage(settings.effective_storage_path)
