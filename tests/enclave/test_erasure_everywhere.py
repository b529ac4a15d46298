"""Crypto-shredding on every backend: after an erasure or a retention destruction, no stored object
holds the subject (every object in the store is decrypted to check) and the destroyed data keys are
gone; once the key-encryption key is rotated and the old version retired, even a copy of an old
wrapped key (a database backup) opens nothing.

Run on local storage with key files (the embedded default) and on SeaweedFS over HTTPS with OpenBao
transit.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.decisions import pseudonyms
from enclave.datasets.erasure import DatasetErasure
from enclave.datasets.exceptions import DatasetNotFound
from enclave.datasets.frames import FrameCache
from enclave.datasets.ingestion import ingest
from enclave.datasets.models import Dataset
from enclave.datasets.retention import run_retention
from enclave.objects.envelope import Binding
from enclave.objects.models import DataKey
from enclave.objects.rotation import retire, rewrap_all, rotate
from enclave.objects.store import EncryptedStore, ObjectContext, ObjectDestroyed
from infra.keys import FileKeyBackend, UnwrapFailed, WrappedKey
from infra.keys.vault import VaultKeyBackend
from infra.storage.local import LocalStorage
from infra.storage.s3 import S3Storage
from tests.enclave.test_erasure import old_enough, withdraw
from tests.support.seaweedfs import random_bucket

DATASET = "questionnaire-wave1"
DOMAIN = "letscare-main"


@pytest.fixture(params=["local-keyfiles", "seaweedfs-openbao"])
def store(request, tmp_path, db_session) -> Iterator[EncryptedStore]:
    if request.param == "local-keyfiles":
        yield EncryptedStore(
            db_session, FileKeyBackend(tmp_path / "keys"), LocalStorage(tmp_path / "objects")
        )
        return
    bao = request.getfixturevalue("openbao")
    weed = request.getfixturevalue("seaweedfs")
    storage = S3Storage.from_settings(weed.settings(s3_bucket=random_bucket()))
    storage.ensure_bucket()
    try:
        yield EncryptedStore(
            db_session,
            VaultKeyBackend(bao.addr, bao.token),
            storage,
            kek_name=f"dataset-kek-{secrets.token_hex(4)}",  # rotated and retired below: not shared
        )
    finally:
        storage.close()


def upload(db_session: Session, world: dict[str, Any], store: EncryptedStore, times: int) -> None:
    for _ in range(times):
        ingest(
            db_session,
            world["steward"],
            store,
            world["protector"],
            dataset_id=DATASET,
            data=world["upload"].write_csv().encode(),
        )


def wrapped_keys(db_session: Session) -> dict[str, tuple[str, Binding]]:
    """Every live data key as it is stored (as a database backup would hold it)."""
    return {
        row.storage_key: (row.wrapped_key, Binding(row.dataset_id, row.dataset_version, row.object_name))
        for row in db_session.execute(select(DataKey).where(DataKey.destroyed_at.is_(None))).scalars()
    }


def decrypt_everything(db_session: Session, store: EncryptedStore) -> dict[str, bytes]:
    """Every object in the store, decrypted; an object without a live data key fails the test."""
    live = {row.storage_key: row for row in db_session.execute(select(DataKey)).scalars() if row.wrapped_key}
    plain = {}
    for info in store.storage.list("datasets/"):
        assert info.key in live, f"{info.key} is stored but has no live data key"
        row = live[info.key]
        plain[info.key] = store.read_object(
            db_session, ObjectContext(row.dataset_id, row.dataset_version, row.object_name)
        )
    return plain


def pseudonyms_in(plain: bytes) -> list[str]:
    """The pseudonyms of a decrypted object (Parquet compresses, so the bytes alone do not tell)."""
    return pl.read_parquet(plain)["pseudonym"].to_list()


def assert_copies_open_nothing(store: EncryptedStore, copies: dict[str, tuple[str, Binding]]) -> None:
    """Rotate, rewrap and retire: the old KEK versions are gone, so old wrapped keys open nothing."""
    latest = rotate(store)
    rewrap_all(store)
    retire(store, latest)
    for token, binding in copies.values():
        with pytest.raises(UnwrapFailed):
            store.keys.unwrap(store.kek_name, WrappedKey(token), binding.encode())


def test_an_erased_subject_is_in_no_stored_object_and_the_old_keys_are_gone(db_session, world, store):
    upload(db_session, world, store, times=2)
    subject = old_enough(db_session, world)
    pseudonym = pseudonyms.pseudonymise(db_session, store.keys, DOMAIN, [subject])[subject]
    before = decrypt_everything(db_session, store)
    assert len(before) == 2
    assert all(pseudonym in pseudonyms_in(plain) for plain in before.values())
    backup = wrapped_keys(db_session)

    notice = withdraw(db_session, world, subject, ["questionnaires"])
    DatasetErasure(lambda: store).handle(db_session, notice)
    db_session.expire_all()

    after = decrypt_everything(db_session, store)
    assert len(after) == 2
    assert not set(after) & set(before), "every object holding the subject was replaced"
    for plain in after.values():
        assert pseudonym not in pseudonyms_in(plain)
    for storage_key, (_, binding) in backup.items():
        row = db_session.execute(select(DataKey).where(DataKey.storage_key == storage_key)).scalar_one()
        assert row.destroyed_at is not None
        assert row.wrapped_key == ""
        with pytest.raises(ObjectDestroyed):
            store.read_object(db_session, ObjectContext(binding.dataset_id, binding.version, binding.name))
    assert_copies_open_nothing(store, backup)
    assert len(decrypt_everything(db_session, store)) == 2, "the live objects still open after rotation"


def test_a_dataset_destroyed_at_its_retention_date_leaves_nothing_stored(
    db_session, session_factory, world, store
):
    upload(db_session, world, store, times=2)
    backup = wrapped_keys(db_session)
    assert len(backup) == 2
    db_session.get(Dataset, DATASET).retention_until = datetime.now(UTC).date()
    db_session.flush()
    assert run_retention(session_factory, store).destroyed == [DATASET]
    db_session.expire_all()
    assert list(store.storage.list("datasets/")) == []
    rows = list(db_session.execute(select(DataKey)).scalars())
    assert len(rows) == 2
    assert all(row.destroyed_at is not None and row.wrapped_key == "" for row in rows)
    with pytest.raises(DatasetNotFound):
        FrameCache(max_bytes=2**26).get(db_session, store, DATASET)
    assert_copies_open_nothing(store, backup)
