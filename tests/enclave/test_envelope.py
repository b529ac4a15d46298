"""Envelope-encrypted objects: round trips on local storage and SeaweedFS with key files and OpenBao,
and every kind of tampering — a flipped byte, a swapped, truncated, extended or replayed object, a
wrong key — fails with an integrity error instead of giving data."""

from __future__ import annotations

import hashlib
import os
import secrets
import tracemalloc
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.objects import (
    Binding,
    DataKey,
    EncryptedStore,
    ObjectAlreadyStored,
    ObjectContext,
    ObjectDestroyed,
    ObjectIntegrityError,
    ObjectNotStored,
)
from enclave.objects.envelope import (
    HEADER_BYTES,
    TAG_BYTES,
    decrypt_stream,
    encrypt_stream,
    segment_bounds,
    stored_size,
)
from infra.keys import FileKeyBackend, KeyBackend, UnwrapFailed, WrappedKey
from infra.keys.vault import VaultKeyBackend
from infra.storage import ObjectStorage
from infra.storage.local import LocalStorage

SEGMENT = 64 * 1024
MiB = 1024 * 1024


def _kek() -> str:
    # Transit keys live for the whole test session: each test uses its own key-encryption key.
    return f"dataset-kek-{secrets.token_hex(4)}"


@pytest.fixture(params=["key-files", "openbao"])
def keys(request, tmp_path) -> KeyBackend:
    if request.param == "key-files":
        return FileKeyBackend(tmp_path / "keys")
    server = request.getfixturevalue("openbao")
    return VaultKeyBackend(server.addr, server.token)


@pytest.fixture(params=["local", "seaweedfs"])
def storage(request, tmp_path) -> ObjectStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    return request.getfixturevalue("s3_storage")


@pytest.fixture
def local_store(tmp_path, session_factory) -> EncryptedStore:
    """Key files and a local folder, small segments so tests cross segment boundaries cheaply."""
    return EncryptedStore(
        session_factory,
        FileKeyBackend(tmp_path / "keys"),
        LocalStorage(tmp_path / "objects"),
        kek_name=_kek(),
        segment_size=SEGMENT,
    )


def _ctx(name: str = "part-0.parquet", dataset: str | None = None, version: int = 1) -> ObjectContext:
    return ObjectContext(dataset or f"ds-{secrets.token_hex(4)}", version, name)


def _chunks(data: bytes, size: int = 10_000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _segments(stored: bytes, segment_size: int = SEGMENT) -> list[bytes]:
    return [stored[start:end] for start, end in segment_bounds(len(stored), segment_size)]


@pytest.mark.parametrize("size", [0, 1, SEGMENT, 2 * SEGMENT + 123])
def test_objects_round_trip_on_every_store_and_key_backend(
    keys: KeyBackend, storage: ObjectStorage, session_factory, db_session: Session, size: int
):
    store = EncryptedStore(session_factory, keys, storage, kek_name=_kek(), segment_size=SEGMENT)
    data = os.urandom(size)
    ctx = _ctx()

    stored = store.put_object(db_session, ctx, _chunks(data))

    assert store.read_object(db_session, ctx) == data
    assert b"".join(store.open_object(db_session, ctx)) == data
    assert stored.plaintext_bytes == size
    assert stored.stored_bytes == stored_size(size, SEGMENT) == storage.stat(ctx.storage_key).size
    raw = storage.get(ctx.storage_key)
    if size >= 16:
        assert data[:16] not in raw
    row = db_session.execute(select(DataKey).where(DataKey.storage_key == ctx.storage_key)).scalar_one()
    assert (row.dataset_id, row.dataset_version, row.object_name) == (ctx.dataset_id, 1, ctx.name)
    assert row.kek_version == WrappedKey(row.wrapped_key).version == keys.latest_version(store.kek_name)
    assert row.destroyed_at is None


def test_every_object_gets_its_own_data_key_and_nonces(local_store: EncryptedStore, db_session: Session):
    data = b"the same plaintext" * 1000
    first, second = _ctx("a"), _ctx("b")
    local_store.put_object(db_session, first, [data])
    local_store.put_object(db_session, second, [data])
    raw_first = local_store.storage.get(first.storage_key)
    raw_second = local_store.storage.get(second.storage_key)
    assert raw_first[HEADER_BYTES:] != raw_second[HEADER_BYTES:]
    assert raw_first[9:16] != raw_second[9:16]  # nonce prefixes


@pytest.mark.parametrize("where", ["header", "first segment", "middle segment", "last tag"])
def test_a_flipped_byte_anywhere_fails_the_integrity_check(
    local_store: EncryptedStore, db_session: Session, where: str
):
    ctx = _ctx()
    local_store.put_object(db_session, ctx, _chunks(os.urandom(3 * SEGMENT + 50)))
    raw = bytearray(local_store.storage.get(ctx.storage_key))
    position = {
        "header": 12,
        "first segment": HEADER_BYTES + 5,
        "middle segment": SEGMENT + 1000,
        "last tag": len(raw) - 1,
    }[where]
    raw[position] ^= 0x01
    local_store.storage.put(ctx.storage_key, bytes(raw))

    with pytest.raises(ObjectIntegrityError) as caught:
        local_store.read_object(db_session, ctx)
    assert caught.value.status_code == 500
    assert "fails authentication" in str(caught.value) or "invalid" in str(caught.value)


def test_an_object_copied_under_another_objects_key_does_not_decrypt(
    local_store: EncryptedStore, db_session: Session
):
    dataset = f"ds-{secrets.token_hex(4)}"
    first, second = _ctx("a.parquet", dataset), _ctx("b.parquet", dataset)
    local_store.put_object(db_session, first, [b"first object " * 100])
    local_store.put_object(db_session, second, [b"second object " * 100])

    local_store.storage.put(second.storage_key, local_store.storage.get(first.storage_key))

    with pytest.raises(ObjectIntegrityError, match="segment 0"):
        local_store.read_object(db_session, second)
    assert local_store.read_object(db_session, first) == b"first object " * 100


@pytest.mark.parametrize(
    "damage", ["drop last segment", "append a segment", "swap two segments", "cut a tag"]
)
def test_a_truncated_extended_or_reordered_segment_list_is_refused(
    local_store: EncryptedStore, db_session: Session, damage: str
):
    ctx = _ctx()
    local_store.put_object(db_session, ctx, _chunks(os.urandom(3 * SEGMENT + 77)))
    raw = local_store.storage.get(ctx.storage_key)
    header, segments = raw[:HEADER_BYTES], _segments(raw)
    assert len(segments) == 4
    if damage == "drop last segment":
        altered = header + b"".join(segments[:-1])
    elif damage == "append a segment":
        altered = raw + segments[1]
    elif damage == "swap two segments":
        altered = header + b"".join([segments[1], segments[0], *segments[2:]])
    else:
        altered = raw[:-5]
    local_store.storage.put(ctx.storage_key, altered)

    with pytest.raises(ObjectIntegrityError):
        local_store.read_object(db_session, ctx)


def test_an_object_replayed_into_another_dataset_or_version_does_not_open(
    local_store: EncryptedStore, db_session: Session
):
    original = _ctx("part-0.parquet", version=1)
    local_store.put_object(db_session, original, [b"version one rows"])
    row = db_session.execute(select(DataKey).where(DataKey.storage_key == original.storage_key)).scalar_one()
    for replayed in (
        ObjectContext(original.dataset_id, 2, original.name),
        ObjectContext(f"ds-{secrets.token_hex(4)}", 1, original.name),
        ObjectContext(original.dataset_id, 1, "part-1.parquet"),
    ):
        # Both the object and its wrapped key are copied to the other place.
        local_store.storage.put(replayed.storage_key, local_store.storage.get(original.storage_key))
        db_session.add(
            DataKey(
                storage_key=replayed.storage_key,
                dataset_id=replayed.dataset_id,
                dataset_version=replayed.version,
                object_name=replayed.name,
                wrapped_key=row.wrapped_key,
                kek_version=row.kek_version,
                segment_size=row.segment_size,
            )
        )
        db_session.flush()
        with pytest.raises(UnwrapFailed):
            local_store.read_object(db_session, replayed)

    # Even someone holding the data key cannot open it under another binding.
    data_key = local_store.keys.unwrap(
        local_store.kek_name, WrappedKey(row.wrapped_key), original.binding.encode()
    )
    raw = local_store.storage.get(original.storage_key)
    assert b"".join(decrypt_stream(data_key, original.binding, [raw])) == b"version one rows"
    for other in (Binding(original.dataset_id, 2, original.name), Binding("other", 1, original.name)):
        with pytest.raises(ObjectIntegrityError):
            b"".join(decrypt_stream(data_key, other, [raw]))


def test_a_wrong_key_backend_cannot_open_the_data_key(
    local_store: EncryptedStore, db_session: Session, tmp_path
):
    ctx = _ctx()
    local_store.put_object(db_session, ctx, [b"rows"])
    stranger = EncryptedStore(
        None, FileKeyBackend(tmp_path / "other-keys"), local_store.storage, kek_name=local_store.kek_name
    )
    with pytest.raises(UnwrapFailed):
        stranger.read_object(db_session, ctx)


def test_header_of_another_format_or_a_stub_is_refused(local_store: EncryptedStore, db_session: Session):
    ctx = _ctx()
    local_store.put_object(db_session, ctx, [b"rows"])
    for stub in (b"", b"LCEO", b"PK\x03\x04" + bytes(40)):
        local_store.storage.put(ctx.storage_key, stub)
        with pytest.raises(ObjectIntegrityError):
            local_store.read_object(db_session, ctx)


def test_a_missing_object_with_a_live_key_is_an_integrity_error(
    local_store: EncryptedStore, db_session: Session
):
    ctx = _ctx()
    local_store.put_object(db_session, ctx, [b"rows"])
    local_store.storage.delete(ctx.storage_key)
    with pytest.raises(ObjectIntegrityError, match="missing from storage"):
        local_store.read_object(db_session, ctx)


def test_reading_an_object_never_stored_is_not_found(local_store: EncryptedStore, db_session: Session):
    with pytest.raises(ObjectNotStored) as caught:
        local_store.read_object(db_session, _ctx())
    assert caught.value.status_code == 404


def test_a_second_put_of_the_same_object_is_refused_and_keeps_the_first(
    local_store: EncryptedStore, db_session: Session
):
    ctx = _ctx()
    local_store.put_object(db_session, ctx, [b"first"])
    with pytest.raises(ObjectAlreadyStored) as caught:
        local_store.put_object(db_session, ctx, [b"second"])
    assert caught.value.extra == {"reason": "object_exists"}
    assert local_store.read_object(db_session, ctx) == b"first"


def test_destroyed_object_cannot_be_read_even_from_a_backup_and_its_key_is_gone(
    local_store: EncryptedStore, db_session: Session
):
    ctx = _ctx()
    kept = _ctx("kept.parquet", ctx.dataset_id)
    local_store.put_object(db_session, ctx, [b"rows of an erased subject"])
    local_store.put_object(db_session, kept, [b"other rows"])
    backup = local_store.storage.get(ctx.storage_key)

    destroyed = local_store.destroy_object(db_session, ctx)

    with pytest.raises(ObjectDestroyed, match="destroyed") as caught:
        local_store.read_object(db_session, ctx)
    assert caught.value.extra == {"reason": "destroyed"}
    assert not local_store.storage.exists(ctx.storage_key)
    row = db_session.execute(select(DataKey).where(DataKey.storage_key == ctx.storage_key)).scalar_one()
    assert destroyed == [row.id]
    assert row.wrapped_key == ""
    assert row.kek_version is None
    assert row.destroyed_at is not None
    # The backup copy is restored: still unreadable, since no key for it exists anywhere.
    local_store.storage.put(ctx.storage_key, backup)
    with pytest.raises(ObjectDestroyed):
        local_store.read_object(db_session, ctx)
    # Idempotent: a second call changes nothing and removes the restored copy too.
    assert local_store.destroy_object(db_session, ctx) == []
    assert not local_store.storage.exists(ctx.storage_key)
    assert local_store.read_object(db_session, kept) == b"other rows"


def test_an_object_can_be_stored_again_under_a_destroyed_name(
    local_store: EncryptedStore, db_session: Session
):
    ctx = _ctx()
    local_store.put_object(db_session, ctx, [b"with the erased subject"])
    local_store.destroy_object(db_session, ctx)
    local_store.put_object(db_session, ctx, [b"without them"])
    assert local_store.read_object(db_session, ctx) == b"without them"


def test_a_failing_source_records_nothing(local_store: EncryptedStore, db_session: Session):
    ctx = _ctx()

    def broken() -> Iterator[bytes]:
        yield os.urandom(3 * SEGMENT)
        raise ValueError("row 12: unknown category")

    with pytest.raises(ValueError, match="row 12"):
        local_store.put_object(db_session, ctx, broken())
    assert db_session.execute(select(DataKey).where(DataKey.storage_key == ctx.storage_key)).first() is None
    assert not local_store.storage.exists(ctx.storage_key)
    local_store.put_object(db_session, ctx, [b"retried"])
    assert local_store.read_object(db_session, ctx) == b"retried"


def _pattern(total: int, chunk: int = MiB) -> Iterator[bytes]:
    """``total`` bytes that are not all alike, made one chunk at a time."""
    block = hashlib.sha256(b"seed").digest() * (chunk // 32)
    for index in range(0, total, chunk):
        yield (index.to_bytes(8, "big") + block)[: min(chunk, total - index)]


def test_a_200_mb_stream_is_encrypted_and_decrypted_with_bounded_memory(
    tmp_path, session_factory, db_session: Session
):
    store = EncryptedStore(
        session_factory,
        FileKeyBackend(tmp_path / "keys"),
        LocalStorage(tmp_path / "objects"),
        kek_name=_kek(),
    )
    total = 200 * MiB
    ctx = _ctx("big.parquet")
    expected = hashlib.sha256()
    for chunk in _pattern(total):
        expected.update(chunk)

    tracemalloc.start()
    try:
        stored = store.put_object(db_session, ctx, _pattern(total))
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        seen, got = 0, hashlib.sha256()
        for segment in store.open_object(db_session, ctx):
            seen += len(segment)
            got.update(segment)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.plaintext_bytes == seen == total
    assert got.digest() == expected.digest()
    assert put_peak < 24 * MiB, f"encrypting held {put_peak / MiB:.0f} MiB"
    assert read_peak < 24 * MiB, f"decrypting held {read_peak / MiB:.0f} MiB"


def test_the_envelope_streams_any_chunking_of_input_and_stored_bytes():
    key, binding = os.urandom(32), Binding("ds", 3, "part")
    for size in (0, 15, SEGMENT - 33, SEGMENT - 32, SEGMENT - 31, SEGMENT, 2 * SEGMENT - 48, 3 * SEGMENT):
        data = os.urandom(size)
        for chunk in (1000, SEGMENT, 5 * SEGMENT):
            stored = b"".join(encrypt_stream(key, binding, _chunks(data, chunk), segment_size=SEGMENT))
            assert len(stored) == stored_size(size, SEGMENT)
            assert all(end - start <= SEGMENT for start, end in segment_bounds(len(stored), SEGMENT))
            for read in (7, SEGMENT, SEGMENT + TAG_BYTES, len(stored) or 1):
                assert b"".join(decrypt_stream(key, binding, _chunks(stored, read))) == data
