"""Local-folder object store: each object is a file, published by write-temp, fsync, rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from infra.storage.base import ObjectInfo, ObjectNotFound, StorageError, StorageUnavailable, check_key

CHUNK = 1024 * 1024


class LocalStorage:
    """Objects as files under one root folder (mode 0700). Rename makes every publish atomic."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _info(self, key: str, path: Path) -> ObjectInfo:
        stat = path.stat()
        return ObjectInfo(key=key, size=stat.st_size, modified=datetime.fromtimestamp(stat.st_mtime, UTC))

    def _publish(self, key: str, write: Callable[[BinaryIO], object]) -> ObjectInfo:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        except OSError as exc:
            raise StorageUnavailable(f"local object store not writable: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException as exc:
            Path(tmp_name).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageUnavailable(f"writing object failed: {exc.strerror}") from exc
            raise
        return self._info(key, path)

    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Store bytes atomically."""
        return self._publish(key, lambda handle: handle.write(data))

    def put_stream(self, key: str, stream: BinaryIO, length: int = -1) -> ObjectInfo:
        """Store a stream atomically, copying it in chunks."""

        def write(handle: BinaryIO) -> None:
            remaining = length
            while remaining != 0:
                chunk = stream.read(CHUNK if remaining < 0 else min(CHUNK, remaining))
                if not chunk:
                    break
                handle.write(chunk)
                if remaining > 0:
                    remaining -= len(chunk)
            if remaining > 0:
                raise StorageError(f"stream ended {remaining} bytes early")

        return self._publish(key, write)

    def get(self, key: str) -> bytes:
        """Read a whole object."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}") from None

    def open(self, key: str) -> Iterator[bytes]:
        """Read an object in chunks."""
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}") from None
        with handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    def stat(self, key: str) -> ObjectInfo:
        """Size and time of one object."""
        try:
            return self._info(key, self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}") from None

    def exists(self, key: str) -> bool:
        """True when the object exists."""
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Complete objects under a prefix, in key order; temporary files are never listed."""
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append((key, path))
        for key, path in sorted(keys):
            try:
                yield self._info(key, path)
            except FileNotFoundError:
                continue

    def delete(self, key: str) -> None:
        """Remove an object if present."""
        self._path(key).unlink(missing_ok=True)

    def check(self) -> str:
        """Check the folder is writable."""
        probe = self.root / ".tmp-ready-probe"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageUnavailable(f"local object store {self.root} not writable: {exc.strerror}") from exc
        return f"local folder {self.root}"

    def remove_stale_temporaries(self, older_than_seconds: float = 3600.0) -> int:
        """Delete temporary files left by writers that died mid-write; returns how many.

        Only files untouched for ``older_than_seconds`` are removed, so a live writer keeps its own.
        """
        import time

        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self.root.rglob(".tmp-*"):
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
