"""The object-storage interface shared by every backend.

Every write is an atomic publish: a reader sees either the previous state or the whole new object,
never part of one. Backends raise only the errors below, so callers can tell a missing object, a
refused credential and a passing outage (retry later) apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from infra.errors import EnclaveError, NotFound, ServiceUnavailable


class StorageError(EnclaveError):
    """An object-storage operation failed for a reason that retrying will not fix."""

    status_code = 500
    type_slug = "storage-error"
    title = "Storage error"


class StorageUnavailable(ServiceUnavailable):
    """The object store cannot be reached; nothing was published, and the same call may succeed later."""

    type_slug = "storage-unavailable"
    title = "Object storage unavailable"


class StorageAuthError(StorageError):
    """The object store refused our credentials."""

    type_slug = "storage-auth"
    title = "Object storage refused the credentials"


class ObjectNotFound(NotFound):
    """No object under that key."""

    type_slug = "object-not-found"
    title = "Object not found"


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object."""

    key: str
    size: int
    modified: datetime
    etag: str | None = None


def check_key(key: str) -> str:
    """Refuse keys that could escape a prefix or a folder."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key or "\x00" in key:
        raise StorageError(f"invalid object key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid object key {key!r}")
    if any(part.startswith(".tmp-") for part in key.split("/")):
        raise StorageError(f"object key {key!r} uses the reserved .tmp- prefix")
    return key


@runtime_checkable
class ObjectStorage(Protocol):
    """Put, get, stat, list, delete; every put is an atomic publish."""

    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""
        ...

    def put_stream(self, key: str, stream: BinaryIO, length: int = -1) -> ObjectInfo:
        """Store a stream of unknown or known length atomically (large objects)."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object; ObjectNotFound if absent."""
        ...

    def open(self, key: str) -> Iterator[bytes]:
        """The object as a stream of chunks, for large objects."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size and time of an object; ObjectNotFound if absent."""
        ...

    def exists(self, key: str) -> bool:
        """True when an object is stored under ``key``."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every complete object whose key starts with ``prefix``, in key order."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; removing an absent object is not an error."""
        ...

    def check(self) -> str:
        """Raise if the store is unusable; otherwise a short description of it."""
        ...
