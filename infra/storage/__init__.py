"""Object storage: one interface, a local-folder backend and an S3 backend (MinIO SDK)."""

from infra.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStorage,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
)
from infra.storage.factory import storage_from_settings

__all__ = [
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStorage",
    "StorageAuthError",
    "StorageError",
    "StorageUnavailable",
    "storage_from_settings",
]
