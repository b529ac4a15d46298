"""Encrypted object storage: envelope-encrypted objects in the object store, data keys in the database.

``put_object`` generates a data key, wraps it with the newest version of the key-encryption key
``dataset-kek`` (bound to the object's dataset, version and name), records the wrapped key in the
caller's transaction, then streams the object through :mod:`enclave.objects.envelope` into one
atomic put. If the put fails, the row is rolled back (a savepoint) and nothing is recorded.

``destroy_object`` is crypto-shredding: the wrapped data key is emptied in the database and the
object deleted, so any copy of the object (a backup of the bucket, a lost disk) can no longer be
decrypted. Database backups still hold the old wrapped key until the KEK version that wrapped it is
retired (``enclave keys rotate``, ``rewrap``, ``retire``), after which it opens nowhere.

Unwrapped data keys live only for the duration of one call; they are not cached, so a destroyed
object's key does not outlive its row in any process.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from enclave.objects.envelope import (
    DEFAULT_SEGMENT_SIZE,
    Binding,
    ObjectIntegrityError,
    decrypt_stream,
    encrypt_stream,
    new_data_key,
)
from enclave.objects.models import DataKey
from infra.errors import Conflict, NotFound
from infra.keys import KeyBackend, WrappedKey
from infra.logging import get_logger
from infra.storage import ObjectNotFound, ObjectStorage
from infra.storage.base import check_key

if TYPE_CHECKING:
    from enclave.components import Components

KEK_NAME = "dataset-kek"
"""The key-encryption key that wraps every stored object's data key."""
KEY_PREFIX = "datasets"

log = get_logger(__name__)


class ObjectNotStored(NotFound):
    """No object was ever stored under this dataset, version and name."""

    type_slug = "object-not-stored"
    title = "No such stored object"


class ObjectDestroyed(NotFound):
    """The object was crypto-shredded: its data key is gone and it can never be read again."""

    status_code = 410
    type_slug = "object-destroyed"
    title = "Stored object destroyed"


class ObjectAlreadyStored(Conflict):
    """A live object is already stored under this dataset, version and name (versions are immutable)."""

    type_slug = "object-exists"
    title = "Object already stored"


@dataclass(frozen=True)
class ObjectContext:
    """Which object: its dataset, the dataset version and the object's name within the version."""

    dataset_id: str
    version: int
    name: str

    def __post_init__(self) -> None:
        for label, value in (("dataset id", self.dataset_id), ("object name", self.name)):
            if not value or len(value) > 255 or value != value.strip() or "\x00" in value:
                raise ValueError(f"invalid {label} {value!r}")
        if "/" in self.dataset_id or self.version < 1:
            raise ValueError("invalid dataset id or version")
        check_key(self.storage_key)

    @property
    def binding(self) -> Binding:
        """What the ciphertext and the wrapped key are bound to."""
        return Binding(self.dataset_id, self.version, self.name)

    @property
    def storage_key(self) -> str:
        """Where the encrypted object lives in the object store."""
        return f"{KEY_PREFIX}/{self.dataset_id}/v{self.version}/{self.name}"


@dataclass(frozen=True)
class StoredObject:
    """What ``put_object`` stored."""

    id: str
    storage_key: str
    kek_version: int
    plaintext_bytes: int
    stored_bytes: int


class _StreamReader(io.RawIOBase):
    """A file-like view of an iterator of byte strings, for the store's ``put_stream``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            rest = self._pending + b"".join(self._chunks)
            self._pending = b""
            return rest
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return b""
        if len(self._pending) <= size:
            out, self._pending = self._pending, b""
            return out
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


class _Counted:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = chunks
        self.total = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.total += len(chunk)
            yield chunk


class EncryptedStore:
    """Stores, reads and destroys envelope-encrypted objects; the caller owns the transaction.

    ``sessions`` is used only by the key-rotation helpers of :mod:`enclave.objects.rotation`, which
    commit batch by batch when given a session factory (or only flush when given one session).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session] | Session | None,
        keys: KeyBackend,
        storage: ObjectStorage,
        *,
        kek_name: str = KEK_NAME,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        self.sessions = sessions
        self.keys = keys
        self.storage = storage
        self.kek_name = kek_name
        self.segment_size = segment_size

    # --- writing ----------------------------------------------------------------------------------

    def put_object(self, session: Session, ctx: ObjectContext, chunks: Iterable[bytes]) -> StoredObject:
        """Encrypt ``chunks`` under a fresh data key and publish them atomically under ``ctx``.

        The data-key row is added in the caller's transaction (flushed, not committed). Raises
        ``ObjectAlreadyStored`` if a live object exists under ``ctx``, and ``StorageUnavailable``
        (retryable) if the store fails, in which case nothing is recorded.
        """
        context = ctx.binding.encode()
        data_key = new_data_key()
        wrapped = self.keys.wrap(self.kek_name, data_key, context)
        row = DataKey(
            storage_key=ctx.storage_key,
            dataset_id=ctx.dataset_id,
            dataset_version=ctx.version,
            object_name=ctx.name,
            wrapped_key=wrapped.token,
            kek_version=wrapped.version,
            segment_size=self.segment_size,
        )
        savepoint = session.begin_nested()
        try:
            session.add(row)
            session.flush()
        except IntegrityError:
            savepoint.rollback()
            raise ObjectAlreadyStored(
                f"an object is already stored as {ctx.name!r} in version {ctx.version} of this dataset",
                extra={"reason": "object_exists"},
            ) from None
        plain = _Counted(chunks)
        reader = _StreamReader(encrypt_stream(data_key, ctx.binding, plain, segment_size=self.segment_size))
        try:
            info = self.storage.put_stream(ctx.storage_key, reader)  # type: ignore[arg-type]
        except BaseException:
            savepoint.rollback()
            raise
        row.plaintext_bytes = plain.total
        row.stored_bytes = info.size
        session.flush()
        savepoint.commit()
        log.info(
            "enclave.object_stored",
            dataset_id=ctx.dataset_id,
            version=ctx.version,
            stored_bytes=info.size,
            kek_version=wrapped.version,
        )
        return StoredObject(row.id, ctx.storage_key, wrapped.version, plain.total, info.size)

    # --- reading ----------------------------------------------------------------------------------

    def _live_row(self, session: Session, ctx: ObjectContext) -> DataKey:
        rows = (
            session.execute(
                select(DataKey)
                .where(DataKey.storage_key == ctx.storage_key)
                .order_by(DataKey.destroyed_at.is_(None).desc(), DataKey.created_at.desc())
            )
            .scalars()
            .all()
        )
        if not rows:
            raise ObjectNotStored(
                f"no object {ctx.name!r} is stored in version {ctx.version} of this dataset",
                extra={"reason": "not_stored"},
            )
        row = rows[0]
        if row.destroyed_at is not None or not row.wrapped_key:
            raise ObjectDestroyed(
                f"object {ctx.name!r} of version {ctx.version} was destroyed (its data key is gone)",
                extra={"reason": "destroyed"},
            )
        return row

    def open_object(self, session: Session, ctx: ObjectContext) -> Iterator[bytes]:
        """The object's plaintext, one segment (about 1 MiB) at a time.

        The data key is looked up and unwrapped before this returns (``ObjectNotStored``,
        ``ObjectDestroyed``, ``UnwrapFailed``); ``ObjectIntegrityError`` is raised while iterating
        at the first segment that does not authenticate.
        """
        row = self._live_row(session, ctx)
        data_key = self.keys.unwrap(self.kek_name, WrappedKey(row.wrapped_key), ctx.binding.encode())
        try:
            stored = self.storage.open(ctx.storage_key)
        except ObjectNotFound:
            raise ObjectIntegrityError(
                f"object {ctx.name!r} of version {ctx.version} has a data key but is missing from storage",
                extra={"reason": "missing"},
            ) from None
        return self._decrypt(data_key, ctx, stored)

    @staticmethod
    def _decrypt(data_key: bytes, ctx: ObjectContext, stored: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from decrypt_stream(data_key, ctx.binding, stored)
        except ObjectNotFound:
            raise ObjectIntegrityError(
                f"object {ctx.name!r} of version {ctx.version} has a data key but is missing from storage",
                extra={"reason": "missing"},
            ) from None

    def read_object(self, session: Session, ctx: ObjectContext) -> bytes:
        """The whole plaintext of a (small) object, returned only once every segment authenticated."""
        return b"".join(self.open_object(session, ctx))

    # --- crypto-shredding -------------------------------------------------------------------------

    def destroy_object(self, session: Session, ctx: ObjectContext) -> list[str]:
        """Crypto-shred an object: empty its wrapped data key and delete the stored bytes.

        Idempotent. Returns the ids of the data keys destroyed by this call (for the erasure proof),
        empty if there was no live one (already destroyed, or never stored); the stored bytes are
        deleted in either case. If the store is unreachable, ``StorageUnavailable`` is raised after
        the key row was changed: the caller's transaction rolls back and the call can be repeated.
        """
        rows = (
            session.execute(
                select(DataKey)
                .where(DataKey.storage_key == ctx.storage_key, DataKey.destroyed_at.is_(None))
                .with_for_update()
            )
            .scalars()
            .all()
        )
        now = datetime.now(UTC)
        for row in rows:
            row.wrapped_key = ""
            row.kek_version = None
            row.destroyed_at = now
        session.flush()
        self.storage.delete(ctx.storage_key)
        if rows:
            log.info("enclave.object_destroyed", dataset_id=ctx.dataset_id, version=ctx.version)
        return [row.id for row in rows]


def store_for(components: Components) -> EncryptedStore:
    """The encrypted store of a process: its sessions, key backend and object store."""
    return EncryptedStore(components.session_factory, components.keys, components.storage)
