"""Key rotation of stored objects (rotate, rewrap, retire) with key files and OpenBao, and an S3 outage
in the middle of a put: nothing is recorded, the error is retryable, and a retry completes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit.models import AuditEntry
from enclave.objects import DataKey, EncryptedStore, ObjectContext
from enclave.objects.rotation import OldKeysStillLive, pending, retire, rewrap_all, rotate, version_counts
from infra.db import make_engine, make_session_factory
from infra.keys import FileKeyBackend, KeyBackend, UnwrapFailed, WrappedKey, key_backend_from_settings
from infra.keys.vault import VaultKeyBackend
from infra.settings import load_settings
from infra.storage import StorageUnavailable, storage_from_settings
from infra.storage.local import LocalStorage
from infra.storage.s3 import PART_SIZE, S3Storage
from tests.support.seaweedfs import SeaweedFS, random_bucket, start_seaweedfs

SEGMENT = 64 * 1024


@pytest.fixture(params=["key-files", "openbao"])
def keys(request, tmp_path) -> KeyBackend:
    if request.param == "key-files":
        return FileKeyBackend(tmp_path / "keys")
    server = request.getfixturevalue("openbao")
    return VaultKeyBackend(server.addr, server.token)


@pytest.fixture
def store(keys: KeyBackend, tmp_path, session_factory) -> EncryptedStore:
    return EncryptedStore(
        session_factory,
        keys,
        LocalStorage(tmp_path / "objects"),
        kek_name=f"dataset-kek-{secrets.token_hex(4)}",
        segment_size=SEGMENT,
    )


def _put_many(store: EncryptedStore, session: Session, count: int) -> dict[ObjectContext, bytes]:
    dataset = f"ds-{secrets.token_hex(4)}"
    stored = {}
    for index in range(count):
        ctx = ObjectContext(dataset, 1, f"part-{index}.parquet")
        data = os.urandom(100 + index * 1000)
        store.put_object(session, ctx, [data])
        stored[ctx] = data
    session.commit()
    return stored


def _rows(session: Session, objects: dict[ObjectContext, bytes]) -> list[DataKey]:
    session.expire_all()
    keys = [ctx.storage_key for ctx in objects]
    return list(session.execute(select(DataKey).where(DataKey.storage_key.in_(keys))).scalars())


def test_rewrap_moves_every_key_to_the_new_version_and_data_still_decrypts(
    store: EncryptedStore, db_session: Session
):
    objects = _put_many(store, db_session, 5)
    destroyed = next(iter(objects))
    store.destroy_object(db_session, destroyed)
    db_session.commit()
    before = {row.id: row.wrapped_key for row in _rows(db_session, objects)}

    assert rotate(store) == 2
    assert pending(store) == (2, 4)
    batches: list[int] = []
    report = rewrap_all(store, batch_size=2, progress=batches.append)

    assert (report.version, report.rewrapped, report.remaining) == (2, 4, 0)
    assert batches == [2, 2]
    rows = _rows(db_session, objects)
    live = [row for row in rows if row.destroyed_at is None]
    assert [row.kek_version for row in live] == [2, 2, 2, 2]
    assert all(WrappedKey(row.wrapped_key).version == 2 for row in live)
    assert all(row.wrapped_key != before[row.id] for row in live)
    assert all(row.rewrapped_at is not None for row in live)
    assert [row.wrapped_key for row in rows if row.destroyed_at is not None] == [""]
    for ctx, data in objects.items():
        if ctx != destroyed:
            assert store.read_object(db_session, ctx) == data
    assert version_counts(db_session).get(2, 0) >= 4
    # Nothing left to do: a second run moves nothing.
    assert rewrap_all(store).rewrapped == 0


def test_retire_refuses_while_old_keys_live_then_old_versions_stop_opening(
    store: EncryptedStore, db_session: Session
):
    objects = _put_many(store, db_session, 3)
    old_tokens = {row.storage_key: row.wrapped_key for row in _rows(db_session, objects)}
    rotate(store)

    with pytest.raises(OldKeysStillLive) as caught:
        retire(store, below=2)
    assert caught.value.extra == {"reason": "old_keys_live"}
    assert "3 live data keys" in str(caught.value)
    assert "enclave keys rewrap" in str(caught.value)

    rewrap_all(store)
    retire(store, below=2)

    for ctx, data in objects.items():
        assert store.read_object(db_session, ctx) == data
        with pytest.raises(UnwrapFailed):
            store.keys.unwrap(store.kek_name, WrappedKey(old_tokens[ctx.storage_key]), ctx.binding.encode())
    db_session.commit()
    entries = db_session.scalars(
        select(AuditEntry).where(AuditEntry.target_id == store.kek_name).order_by(AuditEntry.seq)
    ).all()
    assert [(entry.action, entry.details) for entry in entries] == [
        ("enclave.kek_rotated", {"kek_version": 2}),
        ("enclave.data_keys_rewrapped", {"kek_version": 2, "rewrapped": 3, "remaining": 0}),
        ("enclave.kek_retired", {"below": 2}),
    ]


def test_an_interrupted_rewrap_keeps_its_finished_batches_and_a_rerun_completes_it(
    tmp_path, session_factory, db_session: Session
):
    store = EncryptedStore(
        session_factory,
        FileKeyBackend(tmp_path / "keys"),
        LocalStorage(tmp_path / "objects"),
        kek_name=f"dataset-kek-{secrets.token_hex(4)}",
    )
    objects = _put_many(store, db_session, 7)
    rotate(store)

    def killed_after_first_batch(moved: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rewrap_all(store, batch_size=3, progress=killed_after_first_batch)
    assert sorted(row.kek_version for row in _rows(db_session, objects)) == [1, 1, 1, 1, 2, 2, 2]

    report = rewrap_all(store, batch_size=3)
    assert (report.rewrapped, report.remaining) == (4, 0)
    assert {row.kek_version for row in _rows(db_session, objects)} == {2}
    for ctx, data in objects.items():
        assert store.read_object(db_session, ctx) == data


def test_a_retired_key_version_makes_unrewrapped_objects_unreadable(
    tmp_path, session_factory, db_session: Session
):
    keys = FileKeyBackend(tmp_path / "keys")
    store = EncryptedStore(session_factory, keys, LocalStorage(tmp_path / "objects"))
    ctx = ObjectContext("ds-retired", 1, "part-0.parquet")
    store.put_object(db_session, ctx, [b"rows"])
    keys.rotate(store.kek_name)
    keys.retire(store.kek_name, 2)  # behind the store's back: what retire() refuses to do

    with pytest.raises(UnwrapFailed, match="retired"):
        store.read_object(db_session, ctx)


@pytest.fixture
def own_server(tmp_path) -> Iterator[SeaweedFS]:
    """A server of its own, so stopping it cannot disturb other tests."""
    server = start_seaweedfs(tmp_path / "seaweedfs")
    try:
        yield server
    finally:
        server.stop()
        server.remove_sockets()


def test_s3_stopped_during_a_put_records_nothing_and_a_retry_completes(
    own_server: SeaweedFS, tmp_path, db_session: Session, session_factory
):
    storage = S3Storage.from_settings(own_server.settings(s3_bucket=random_bucket()))
    storage.ensure_bucket()
    store = EncryptedStore(session_factory, FileKeyBackend(tmp_path / "keys"), storage)
    ctx = ObjectContext(f"ds-{secrets.token_hex(4)}", 1, "part-0.parquet")
    data = os.urandom(2 * PART_SIZE + 12345)

    def crashes_mid_upload() -> Iterator[bytes]:
        for start in range(0, len(data), 1024 * 1024):
            if start > PART_SIZE + 1024 * 1024:
                own_server.kill()  # the first part went up; the server dies under the next
            yield data[start : start + 1024 * 1024]

    with pytest.raises(StorageUnavailable) as caught:
        store.put_object(db_session, ctx, crashes_mid_upload())
    assert caught.value.retryable
    assert db_session.execute(select(DataKey).where(DataKey.storage_key == ctx.storage_key)).first() is None

    with pytest.raises(StorageUnavailable):
        store.put_object(db_session, ctx, [b"small object while the server is down"])
    assert db_session.execute(select(DataKey).where(DataKey.storage_key == ctx.storage_key)).first() is None

    own_server.start()
    assert not storage.exists(ctx.storage_key)
    store.put_object(db_session, ctx, [data])
    assert store.read_object(db_session, ctx) == data
    storage.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enclave", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_keys_commands_rotate_rewrap_and_retire_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env["ENCLAVE_DATA_DIR"] = str(tmp_path / "var")
    env["COLUMNS"] = "200"
    assert _cli(env, "db", "upgrade").returncode == 0
    settings = load_settings(data_dir=tmp_path / "var")
    engine = make_engine(settings.effective_database_url)
    sessions = make_session_factory(engine)
    store = EncryptedStore(sessions, key_backend_from_settings(settings), storage_from_settings(settings))
    objects = {ObjectContext("ds-cli", 1, f"part-{i}.parquet"): os.urandom(5000) for i in range(3)}
    with sessions() as session:
        for ctx, data in objects.items():
            store.put_object(session, ctx, [data])
        session.commit()

    rotated = _cli(env, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "dataset-kek is now at version 2" in rotated.stdout
    refused = _cli(env, "keys", "retire", "--below", "2")
    assert refused.returncode == 1
    assert "3 live data keys are still wrapped by versions older than 2" in refused.stderr
    status = _cli(env, "keys", "status")
    assert "v1" in status.stdout
    assert "v2 (newest)" in status.stdout
    rewrapped = _cli(env, "keys", "rewrap", "--batch-size", "2")
    assert rewrapped.returncode == 0, rewrapped.stderr
    assert "3 data keys rewrapped to version 2; 0 left" in rewrapped.stdout
    retired = _cli(env, "keys", "retire", "--below", "2")
    assert retired.returncode == 0, retired.stderr

    with sessions() as session:
        for ctx, data in objects.items():
            assert store.read_object(session, ctx) == data
        assert version_counts(session) == {2: 3}
    engine.dispose()


def test_a_wrapped_key_that_does_not_open_is_left_alone_and_keeps_retire_refused(
    tmp_path, session_factory, db_session: Session
):
    store = EncryptedStore(
        session_factory,
        FileKeyBackend(tmp_path / "keys"),
        LocalStorage(tmp_path / "objects"),
        kek_name=f"dataset-kek-{secrets.token_hex(4)}",
    )
    objects = _put_many(store, db_session, 3)
    broken = _rows(db_session, objects)[0]
    prefix, body = broken.wrapped_key.rsplit(":", 1)
    broken.wrapped_key = f"{prefix}:{body[:10]}{'A' if body[10] != 'A' else 'B'}{body[11:]}"
    db_session.commit()
    rotate(store)

    report = rewrap_all(store)

    assert (report.rewrapped, report.failed, report.remaining) == (2, 1, 1)
    with pytest.raises(OldKeysStillLive, match="1 live data keys"):
        retire(store, below=2)
