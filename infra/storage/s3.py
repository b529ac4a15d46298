"""S3 object store (MinIO SDK): one bucket; each object is published by one PUT or a completed multipart."""

from __future__ import annotations

import io
import os
import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn, cast

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ResponseError,
    SSLError,
)

from infra.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
    check_key,
)

if TYPE_CHECKING:
    from infra.settings import Settings

CHUNK = 1024 * 1024
# Unknown-length streams go up in parts of this size; S3 allows 10,000 parts, so streams up to ~78 GiB.
PART_SIZE = 8 * 1024 * 1024

AUTH_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
)
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject"})
# Server-side conditions that pass: the same request may well succeed later.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "ServerBusy",
        "XMinioServerNotInitialized",
    }
)


class _CountingReader:
    """The caller's stream, counting bytes, noticing EOF and remembering errors raised by the source."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0
        self.eof = False
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except BaseException as exc:
            self.error = exc
            raise
        if not data and size != 0:
            self.eof = True
        self.count += len(data)
        return data


class S3Storage:
    """Objects in one S3 bucket. A single PUT and a completed multipart upload are both atomic in S3."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        region: str = "us-east-1",
        secure: bool = True,
        ca_bundle: Path | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        # Few retries, short timeouts: an outage must surface as StorageUnavailable in seconds, not minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca_bundle) if ca_bundle else os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        self._http = http

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        """The store described by the ENCLAVE_S3_* settings."""
        return cls(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key.get_secret_value(),
            settings.s3_bucket,
            region=settings.s3_region,
            secure=settings.s3_secure,
            ca_bundle=settings.s3_ca_bundle,
        )

    @property
    def description(self) -> str:
        """Bucket, endpoint and scheme, for logs and health checks."""
        return f"s3 bucket {self.bucket} at {self.endpoint} ({'https' if self.secure else 'http'})"

    def close(self) -> None:
        """Drop pooled connections."""
        self._http.clear()

    # -- error mapping ---------------------------------------------------------------------------------

    def _raise(self, exc: BaseException, key: str | None = None) -> NoReturn:
        """Re-raise a client or transport error as one of the storage errors; never includes the secret."""
        what = f"object {key!r}" if key is not None else f"bucket {self.bucket}"
        if isinstance(exc, S3Error):
            code = exc.code or "unknown"
            if code in MISSING_CODES and key is not None:
                raise ObjectNotFound(f"no object {key!r}") from exc
            if code == "NoSuchBucket":
                raise StorageError(
                    f"bucket {self.bucket} does not exist at S3 endpoint {self.endpoint}"
                ) from exc
            if code in AUTH_CODES:
                raise StorageAuthError(
                    f"S3 endpoint {self.endpoint} refused the credentials ({code}) for {what}; "
                    "check ENCLAVE_S3_ACCESS_KEY and ENCLAVE_S3_SECRET_KEY"
                ) from exc
            if code in TRANSIENT_CODES:
                raise StorageUnavailable(
                    f"S3 endpoint {self.endpoint} is temporarily failing ({code}) for {what}; retry later"
                ) from exc
            hint = "; check ENCLAVE_S3_ENDPOINT and ENCLAVE_S3_SECURE" if code == "BadRequest" else ""
            raise StorageError(
                f"S3 endpoint {self.endpoint} rejected the request for {what}: {code}: {exc.message}{hint}"
            ) from exc
        if isinstance(exc, InvalidResponseError):
            status = int(getattr(exc, "_code", 0) or 0)
            body = str(getattr(exc, "_body", "") or "").strip()[:200]
            if status >= 500:
                raise StorageUnavailable(
                    f"S3 endpoint {self.endpoint} answered HTTP {status} for {what}; retry later"
                ) from exc
            raise StorageError(
                f"S3 endpoint {self.endpoint} gave a non-S3 answer (HTTP {status}: {body!r}) for {what}; "
                "check ENCLAVE_S3_ENDPOINT and ENCLAVE_S3_SECURE"
            ) from exc
        if isinstance(exc, ServerError):
            raise StorageUnavailable(
                f"S3 endpoint {self.endpoint} answered HTTP {exc.status_code} for {what}; retry later"
            ) from exc
        if isinstance(exc, HTTPError | OSError):
            reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
            if _is_tls_setup_error(reason):
                raise StorageError(
                    f"TLS connection to S3 endpoint {self.endpoint} failed ({_describe(reason)}); "
                    "check ENCLAVE_S3_SECURE and that ENCLAVE_S3_CA_BUNDLE holds the CA of its certificate"
                ) from exc
            raise StorageUnavailable(
                f"S3 endpoint {self.endpoint} is unreachable ({_describe(reason)}) for {what}; retry later"
            ) from exc
        if isinstance(exc, MinioException | ValueError):
            raise StorageError(f"S3 request for {what} at {self.endpoint} failed: {exc}") from exc
        raise exc

    # -- the interface ---------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Store bytes with one atomic PUT (multipart above 5 MiB, published only on completion)."""
        check_key(key)
        try:
            result = self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type="application/octet-stream"
            )
        except Exception as exc:
            self._raise(exc, key)
        return ObjectInfo(key=key, size=len(data), modified=datetime.now(UTC), etag=result.etag)

    def put_stream(self, key: str, stream: BinaryIO, length: int = -1) -> ObjectInfo:
        """Store a stream; unknown lengths go up as a multipart upload that is aborted if anything fails."""
        check_key(key)
        reader = _CountingReader(stream)
        try:
            result = self._client.put_object(
                self.bucket,
                key,
                cast(BinaryIO, reader),
                length,
                content_type="application/octet-stream",
                part_size=PART_SIZE if length < 0 else 0,
            )
        except Exception as exc:
            if reader.error is exc:
                raise
            if length >= 0 and reader.eof and reader.count < length:
                raise StorageError(f"stream ended {length - reader.count} bytes early") from exc
            self._raise(exc, key)
        size = length if length >= 0 else reader.count
        return ObjectInfo(key=key, size=size, modified=datetime.now(UTC), etag=result.etag)

    def get(self, key: str) -> bytes:
        """Read a whole object."""
        return b"".join(self.open(key))

    def open(self, key: str) -> Iterator[bytes]:
        """Read an object in chunks; a missing object raises here, before the first chunk."""
        check_key(key)
        try:
            response = self._client.get_object(self.bucket, key)
        except Exception as exc:
            self._raise(exc, key)
        return self._chunks(key, response)

    def _chunks(self, key: str, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            # urllib3 enforces Content-Length, so a body cut short raises instead of yielding a torn object.
            yield from response.stream(CHUNK)
        except Exception as exc:
            self._raise(exc, key)
        finally:
            response.close()
            response.release_conn()

    def stat(self, key: str) -> ObjectInfo:
        """Size and time of one object."""
        check_key(key)
        try:
            found = self._client.stat_object(self.bucket, key)
        except Exception as exc:
            self._raise(exc, key)
        return ObjectInfo(
            key=key,
            size=found.size or 0,
            modified=found.last_modified or datetime.now(UTC),
            etag=found.etag,
        )

    def exists(self, key: str) -> bool:
        """True when the object exists."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Complete objects under a prefix, in key order; unfinished multipart uploads are never listed."""
        try:
            found = list(self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True))
        except Exception as exc:
            self._raise(exc)
        infos = [
            ObjectInfo(
                key=item.object_name,
                size=item.size or 0,
                modified=item.last_modified or datetime.now(UTC),
                etag=item.etag,
            )
            for item in found
            if item.object_name and not item.is_dir
        ]
        # S3 promises byte order, but a filer-backed server may list folder by folder; sorting makes it exact.
        infos.sort(key=lambda info: info.key.encode())
        return iter(infos)

    def delete(self, key: str) -> None:
        """Remove an object if present."""
        check_key(key)
        try:
            self._client.remove_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in MISSING_CODES:
                return
            self._raise(exc, key)
        except Exception as exc:
            self._raise(exc, key)

    def check(self) -> str:
        """Check the bucket exists and the credentials are accepted."""
        try:
            found = self._client.bucket_exists(self.bucket)
        except Exception as exc:
            self._raise(exc)
        if not found:
            raise StorageError(f"bucket {self.bucket} does not exist at S3 endpoint {self.endpoint}")
        return self.description

    def ensure_bucket(self) -> None:
        """Create the bucket unless it already exists."""
        try:
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            self._raise(exc)
        except Exception as exc:
            self._raise(exc)


def _is_tls_setup_error(reason: BaseException) -> bool:
    """Certificate or protocol mismatches: configuration problems that retrying will not fix."""
    for error in _chain(reason):
        if isinstance(error, ssl.SSLCertVerificationError):
            return True
        if isinstance(error, ssl.SSLError) and error.reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST"):
            return True
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, the errors it wraps in its arguments, and its causes."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        todo.extend(arg for arg in error.args if isinstance(arg, BaseException))
        todo.extend(e for e in (error.__cause__, error.__context__) if e is not None)


def _describe(reason: BaseException) -> str:
    """A short human reason, without urllib3's object reprs."""
    if isinstance(reason, NewConnectionError):
        text = str(reason).split(": ", 1)[-1]
        return text.removeprefix("Failed to establish a new connection: ")
    if isinstance(reason, urllib3.exceptions.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(reason, ProtocolError):
        return f"connection broken: {reason.args[0] if reason.args else reason}"
    if isinstance(reason, ResponseError):
        return "server kept failing"
    if isinstance(reason, SSLError):
        return f"TLS error: {reason.args[0] if reason.args else reason}"
    return re.sub(r"<[^>]*>: ", "", str(reason)) or type(reason).__name__
