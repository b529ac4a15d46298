"""The S3 object store against a real S3 server (SeaweedFS over HTTPS): the full interface, error mapping,
an outage with restart, and atomic replacement under a concurrent reader."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

from infra.storage import (
    ObjectNotFound,
    ObjectStorage,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
    storage_from_settings,
)
from infra.storage.s3 import CHUNK, PART_SIZE, S3Storage
from tests.support.seaweedfs import SeaweedFS, random_bucket, start_seaweedfs

MiB = 1024 * 1024


def pending_multipart_uploads(storage: S3Storage) -> list[object]:
    """Unfinished multipart uploads in the store's bucket (minio exposes the call only privately)."""
    result = storage._client._list_multipart_uploads(storage.bucket)
    return list(result.uploads)


class Exploding(io.RawIOBase):
    """A source stream that fails after ``limit`` bytes, as a broken upstream would."""

    def __init__(self, limit: int) -> None:
        self.remaining = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            raise ValueError("source broke")
        n = self.remaining if size < 0 else min(size, self.remaining)
        self.remaining -= n
        return b"s" * n


def test_s3_storage_satisfies_the_object_storage_protocol_and_is_chosen_by_the_settings(seaweedfs):
    storage = storage_from_settings(seaweedfs.settings())
    assert isinstance(storage, S3Storage)
    assert isinstance(storage, ObjectStorage)


def test_check_describes_the_bucket_and_refuses_a_missing_one(seaweedfs, s3_storage):
    assert s3_storage.check() == f"s3 bucket {s3_storage.bucket} at {seaweedfs.endpoint} (https)"
    missing = S3Storage.from_settings(seaweedfs.settings(s3_bucket=random_bucket()))
    with pytest.raises(StorageError, match="does not exist"):
        missing.check()


def test_put_get_round_trip_and_stat_reports_the_size(s3_storage):
    info = s3_storage.put("datasets/a/v1/part-0", b"alpha")
    assert (info.key, info.size) == ("datasets/a/v1/part-0", 5)
    assert s3_storage.get("datasets/a/v1/part-0") == b"alpha"
    stat = s3_storage.stat("datasets/a/v1/part-0")
    assert stat.size == 5
    assert stat.modified.tzinfo is not None
    assert s3_storage.exists("datasets/a/v1/part-0")
    assert not s3_storage.exists("datasets/a/v1/part-9")


def test_put_replaces_an_existing_object(s3_storage):
    s3_storage.put("replace/me", b"first version")
    s3_storage.put("replace/me", b"second")
    assert s3_storage.get("replace/me") == b"second"
    assert s3_storage.stat("replace/me").size == 6


def test_put_stream_with_known_length_stores_exactly_that_many_bytes(s3_storage):
    payload = os.urandom(3 * MiB + 17)
    info = s3_storage.put_stream("stream/known", io.BytesIO(payload + b"trailing"), length=len(payload))
    assert info.size == len(payload)
    assert s3_storage.get("stream/known") == payload


def test_put_stream_of_unknown_length_goes_up_in_parts_and_reads_back_whole(s3_storage):
    payload = os.urandom(PART_SIZE + 2 * MiB + 5)
    info = s3_storage.put_stream("stream/unknown", io.BytesIO(payload))
    assert info.size == len(payload)
    assert s3_storage.stat("stream/unknown").size == len(payload)
    assert s3_storage.get("stream/unknown") == payload
    assert pending_multipart_uploads(s3_storage) == []


def test_open_streams_chunks_that_join_to_the_content(s3_storage):
    payload = os.urandom(2 * CHUNK + 100)
    s3_storage.put("stream/chunks", payload)
    chunks = list(s3_storage.open("stream/chunks"))
    assert len(chunks) > 1
    assert all(len(chunk) <= CHUNK for chunk in chunks)
    assert b"".join(chunks) == payload


def test_open_of_a_missing_object_raises_at_once(s3_storage):
    with pytest.raises(ObjectNotFound):
        s3_storage.open("nothing/here")


def test_list_returns_only_the_prefix_in_byte_order_of_keys(s3_storage):
    keys = ["p/a", "p/a/b", "p/a/b/c", "p/a-c", "p/a.b", "p/a0", "p/Z", "p/é"]
    for key in reversed(keys):
        s3_storage.put(key, key.encode())
    s3_storage.put("pq/other", b"x")
    s3_storage.put("other/p/a", b"x")
    listed = list(s3_storage.list("p/"))
    assert [info.key for info in listed] == sorted(keys, key=str.encode)
    assert [info.size for info in listed] == [len(key.encode()) for key in sorted(keys, key=str.encode)]
    assert [info.key for info in s3_storage.list("p/a/")] == ["p/a/b", "p/a/b/c"]
    assert len(list(s3_storage.list())) == len(keys) + 2
    assert list(s3_storage.list("absent/")) == []


def test_delete_removes_the_object_and_deleting_an_absent_one_is_fine(s3_storage):
    s3_storage.put("gone/soon", b"x")
    s3_storage.delete("gone/soon")
    assert not s3_storage.exists("gone/soon")
    with pytest.raises(ObjectNotFound):
        s3_storage.get("gone/soon")
    with pytest.raises(ObjectNotFound):
        s3_storage.stat("gone/soon")
    s3_storage.delete("gone/soon")
    s3_storage.delete("never/existed")


@pytest.mark.parametrize(
    "key", ["", "../escape", "/absolute", "a//b", "a/./b", "dir/", "x/.tmp-hidden", "a\\b"]
)
def test_keys_that_could_escape_a_prefix_are_refused(s3_storage, key):
    with pytest.raises(StorageError):
        s3_storage.put(key, b"x")
    with pytest.raises(StorageError):
        s3_storage.get(key)
    with pytest.raises(StorageError):
        s3_storage.delete(key)


def test_stream_shorter_than_its_declared_length_publishes_nothing(s3_storage):
    with pytest.raises(StorageError, match="early"):
        s3_storage.put_stream("short/object", io.BytesIO(b"abc"), length=10)
    assert not s3_storage.exists("short/object")


def test_source_stream_failing_mid_multipart_upload_publishes_nothing_and_leaves_no_upload(s3_storage):
    with pytest.raises(ValueError, match="source broke"):
        s3_storage.put_stream("broken/object", Exploding(PART_SIZE + MiB))
    assert not s3_storage.exists("broken/object")
    assert list(s3_storage.list("broken/")) == []
    assert pending_multipart_uploads(s3_storage) == []


def test_wrong_secret_key_is_refused_by_the_server_without_leaking_the_secret(seaweedfs, s3_storage):
    wrong_secret = "wrong-" + seaweedfs.secret_key
    storage = S3Storage.from_settings(
        seaweedfs.settings(s3_bucket=s3_storage.bucket, s3_secret_key=wrong_secret)
    )
    for call in (storage.check, lambda: storage.put("k", b"x"), lambda: storage.get("k")):
        with pytest.raises(StorageAuthError) as caught:
            call()
        message = str(caught.value)
        assert "refused the credentials" in message
        assert seaweedfs.endpoint in message
        assert wrong_secret not in message
        assert seaweedfs.secret_key not in message
        assert not caught.value.retryable


def test_unknown_access_key_is_refused(seaweedfs, s3_storage):
    storage = S3Storage.from_settings(seaweedfs.settings(s3_bucket=s3_storage.bucket, s3_access_key="nobody"))
    with pytest.raises(StorageAuthError):
        storage.put("k", b"x")


def test_plain_http_against_the_https_endpoint_fails_fast_with_a_hint(seaweedfs, s3_storage):
    storage = S3Storage.from_settings(seaweedfs.settings(s3_bucket=s3_storage.bucket, s3_secure=False))
    for call in (storage.check, lambda: storage.put("k", b"x"), lambda: storage.get("k")):
        started = time.monotonic()
        with pytest.raises(StorageError, match="ENCLAVE_S3_SECURE"):
            call()
        assert time.monotonic() - started < 5


def test_server_certificate_from_an_untrusted_ca_is_refused(seaweedfs, s3_storage):
    storage = S3Storage.from_settings(seaweedfs.settings(s3_bucket=s3_storage.bucket, s3_ca_bundle=None))
    started = time.monotonic()
    with pytest.raises(StorageError, match="ENCLAVE_S3_CA_BUNDLE") as caught:
        storage.get("k")
    assert "certificate verify failed" in str(caught.value)
    assert not caught.value.retryable
    assert time.monotonic() - started < 5


@pytest.fixture
def own_server(tmp_path):
    """A server of its own, so stopping it cannot disturb other tests."""
    server = start_seaweedfs(tmp_path / "seaweedfs")
    try:
        yield server
    finally:
        server.stop()
        server.remove_sockets()


def test_outage_raises_retryable_errors_quickly_and_restart_finds_only_whole_objects(own_server: SeaweedFS):
    storage = S3Storage.from_settings(own_server.settings(s3_bucket=random_bucket()))
    storage.ensure_bucket()
    small = os.urandom(1000)
    big = os.urandom(PART_SIZE + MiB)
    storage.put("kept/small", small)
    storage.put_stream("kept/big", io.BytesIO(big))

    class KillsServerMidUpload(io.RawIOBase):
        """Feeds the second part only after the server has crashed under the first."""

        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            if self.sent >= PART_SIZE + 1 and own_server.process is not None:
                own_server.kill()
            n = min(size if size >= 0 else MiB, 2 * PART_SIZE + 10 - self.sent)
            self.sent += n
            return b"m" * n

    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        storage.put_stream("lost/multipart", KillsServerMidUpload())  # type: ignore[arg-type]
    assert caught.value.retryable
    assert "retry later" in str(caught.value)
    assert own_server.process is None

    for call in (
        lambda: storage.put("lost/small", b"never stored"),
        lambda: storage.get("kept/small"),
        lambda: storage.list("kept/"),
        storage.check,
    ):
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert caught.value.retryable
        assert own_server.endpoint in str(caught.value)
    assert time.monotonic() - started < 10

    own_server.start()
    assert storage.get("kept/small") == small
    assert storage.get("kept/big") == big
    assert not storage.exists("lost/small")
    assert not storage.exists("lost/multipart")
    assert [info.key for info in storage.list()] == ["kept/big", "kept/small"]


def test_reader_sees_a_whole_version_while_a_writer_replaces_the_object(s3_storage):
    size = 2 * MiB
    versions = [bytes([i]) * size for i in range(1, 5)]
    s3_storage.put("shared/object", versions[0])
    stop = threading.Event()
    writes = 0
    errors: list[BaseException] = []

    def writer() -> None:
        nonlocal writes
        try:
            while not stop.is_set():
                s3_storage.put("shared/object", versions[writes % len(versions)])
                writes += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    seen: set[int] = set()
    reads = 0
    overlapping = 0
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            writes_before = writes
            data = s3_storage.get("shared/object")
            reads += 1
            overlapping += writes != writes_before
            assert len(data) == size
            assert data == versions[data[0] - 1], "read mixed two versions"
            seen.add(data[0])
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert writes > 5
    assert reads > 5
    assert overlapping > 0, "no read ran while a replacement was being written"
    assert len(seen) > 1
